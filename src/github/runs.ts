import type { RestEndpointMethodTypes } from "@octokit/rest";
import { UsageError } from "../errors.js";
import type { GithubClient } from "./client.js";

export interface WorkflowRun {
  id: number;
  name: string;
  display_title: string;
  run_number: number;
  event: string;
  status: string;
  conclusion: string | null;
  head_branch: string;
  head_sha: string;
  html_url: string;
  created_at: string;
  updated_at: string;
  run_started_at?: string;
  run_attempt?: number;
}

export interface RepoRef {
  owner: string;
  repo: string;
}

const REPO_PART = /^[A-Za-z0-9_.-]+$/;

/** Splits `owner/name`, refusing anything else before it reaches a URL. */
export function parseRepo(repo: string): RepoRef {
  const parts = repo.split("/");
  const [owner, name] = parts;
  if (parts.length !== 2 || !owner || !name || !REPO_PART.test(owner) || !REPO_PART.test(name)) {
    throw new UsageError(
      `invalid --repo '${repo}'`,
      "give the repository as owner/name, e.g. rapidsai/velox-testing",
    );
  }
  return { owner, repo: name };
}

/** The API names a workflow by its file's base name; the original tool takes the whole path. */
export function workflowFileName(workflow: string): string {
  const base = workflow.trim().split("/").pop() ?? "";
  if (!base || base === "." || base === "..") {
    throw new UsageError(
      `invalid --workflow '${workflow}'`,
      "give the workflow file, e.g. .github/workflows/presto-build-images.yml",
    );
  }
  return base;
}

export type RunStatusFilter = NonNullable<
  RestEndpointMethodTypes["actions"]["listWorkflowRuns"]["parameters"]["status"]
>;

export interface ListWorkflowRunsOptions {
  repo: string;
  workflow: string;
  branch?: string;
  /** A run status or conclusion the API filters on (`completed`, `success`, …). */
  status?: RunStatusFilter;
  limit: number;
}

/** The API's run, as far as the tool reads it: a few fields may be null there. */
interface ApiWorkflowRun extends Omit<WorkflowRun, "name" | "status" | "head_branch"> {
  name?: string | null;
  status: string | null;
  head_branch: string | null;
}

function toWorkflowRun(run: ApiWorkflowRun): WorkflowRun {
  const result: WorkflowRun = {
    id: run.id,
    name: run.name ?? "",
    display_title: run.display_title,
    run_number: run.run_number,
    event: run.event,
    status: run.status ?? "",
    conclusion: run.conclusion,
    head_branch: run.head_branch ?? "",
    head_sha: run.head_sha,
    html_url: run.html_url,
    created_at: run.created_at,
    updated_at: run.updated_at,
  };
  if (run.run_started_at !== undefined) result.run_started_at = run.run_started_at;
  if (run.run_attempt !== undefined) result.run_attempt = run.run_attempt;
  return result;
}

/** The newest `limit` runs of a workflow, newest first, as the API orders them. */
export async function listWorkflowRuns(
  client: GithubClient,
  options: ListWorkflowRunsOptions,
): Promise<WorkflowRun[]> {
  const { owner, repo } = parseRepo(options.repo);
  const workflowId = workflowFileName(options.workflow);
  if (!Number.isInteger(options.limit) || options.limit < 1) {
    throw new UsageError(
      `invalid --limit '${options.limit}'`,
      "give a whole number of runs, 1 or more",
    );
  }
  const runs: WorkflowRun[] = [];
  const pages = client.paginate.iterator(
    "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
    {
      owner,
      repo,
      workflow_id: workflowId,
      per_page: Math.min(options.limit, 100),
      ...(options.branch ? { branch: options.branch } : {}),
      ...(options.status ? { status: options.status } : {}),
    },
  );
  // Pages are numbered, so a run that starts while we page through pushes every later page down
  // by one and the previous page's last run comes again: kept once (in its place, with the
  // newer copy's fields), and the listing reads on until it has `limit` distinct runs.
  const at = new Map<number, number>();
  for await (const page of pages) {
    for (const run of page.data) {
      const seen = at.get(run.id);
      if (seen !== undefined) {
        runs[seen] = toWorkflowRun(run);
        continue;
      }
      at.set(run.id, runs.length);
      runs.push(toWorkflowRun(run));
      if (runs.length >= options.limit) return runs;
    }
  }
  return runs;
}
