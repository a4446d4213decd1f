/**
 * deploy/prometheus-rules.yml and deploy/grafana-dashboard.json: checked by the real promtool
 * (Debian's `prometheus` package; scripts/setup-system.sh installs it), each alert fired by its
 * own promtool case, and every metric they read one the daemon really exports.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DaemonHealth } from "../../src/report/health.js";
import { findOnPath } from "../testbed/system.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const rulesFile = path.join(root, "deploy", "prometheus-rules.yml");
const rulesCases = path.join(root, "test", "unit", "fixtures", "prometheus-rules.test.yml");
const dashboardFile = path.join(root, "deploy", "grafana-dashboard.json");

const promtool = findOnPath("promtool");
if (!promtool && process.env.CI) {
  throw new Error(
    "CI=true but promtool is missing (run scripts/setup-system.sh: package prometheus)",
  );
}

/** Every series name the daemon's /metrics serves (a histogram's as its three series). */
async function exported(): Promise<Set<string>> {
  const metrics = await new DaemonHealth().registry.getMetricsAsJSON();
  return new Set(
    metrics.flatMap(({ name, type }) =>
      String(type) === "histogram" ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name],
    ),
  );
}

/** The metric names an expression reads: ours by prefix, and Prometheus' own `up`. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bgh_gitlab_sync_[a-z0-9_]+\b|\bup(?=\s*\{)/g)].map((m) => m[0]);
}

const rulesText = readFileSync(rulesFile, "utf8");
/** Each rule's expression: one line each, as the file's header asks. */
const ruleExprs = [...rulesText.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1] ?? "");
const alerts = [...rulesText.matchAll(/^\s+- alert: (\S+)$/gm)].map((m) => m[1] ?? "");

interface Panel {
  id: number;
  title: string;
  datasource: { uid: string };
  targets: Array<{ expr: string; refId: string }>;
}
const dashboard = JSON.parse(readFileSync(dashboardFile, "utf8")) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string }> };
};

describe.skipIf(!promtool)("deploy/prometheus-rules.yml", () => {
  it("is valid for promtool, which finds every rule the tests read", () => {
    const out = execFileSync(promtool ?? "promtool", ["check", "rules", rulesFile], {
      encoding: "utf8",
    });
    expect(out).toContain(`SUCCESS: ${ruleExprs.length} rules found`);
    expect(alerts).toEqual(
      expect.arrayContaining([
        "GhGitlabSyncDown",
        "GhGitlabSyncCyclesFailing",
        "GhGitlabSyncPublishLagHigh",
        "GhGitlabSyncRateLimitLow",
      ]),
    );
    expect(alerts).toHaveLength(ruleExprs.length);
  });

  it("fires each alert on the series that should fire it, and none on a healthy daemon's (promtool test rules)", () => {
    const out = execFileSync(promtool ?? "promtool", ["test", "rules", rulesCases], {
      encoding: "utf8",
    });
    expect(out).toContain("SUCCESS");
    const cases = readFileSync(rulesCases, "utf8");
    for (const alert of alerts) {
      // Fired somewhere: a case for it that expects alerts.
      expect(cases).toMatch(new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels`));
    }
  });
});

describe("what the monitoring reads", () => {
  it("every metric the alert rules and the dashboard use is one the daemon exports", async () => {
    const names = await exported();
    expect(names).toContain("gh_gitlab_sync_publish_lag_seconds_bucket");
    expect(names).toContain("gh_gitlab_sync_github_requests_total");
    expect(names).toContain("gh_gitlab_sync_github_rate_limit_remaining");
    const exprs = [...ruleExprs, ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr))];
    expect(exprs.length).toBeGreaterThan(10);
    for (const expr of exprs) {
      const used = metricNames(expr);
      expect(used, expr).not.toEqual([]);
      for (const name of used) if (name !== "up") expect(names, expr).toContain(name);
    }
  });

  it("the dashboard loads: unique panel ids, a query each, the data source and variables it names", () => {
    expect(dashboard.uid).toBe("gh-gitlab-sync");
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const variables = dashboard.templating.list.map((v) => v.name);
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0);
      expect(panel.datasource.uid).toBe("${DS_PROMETHEUS}");
      for (const target of panel.targets) {
        for (const [, variable] of target.expr.matchAll(/\$(\w+)/g)) {
          if (variable !== "__range") expect(variables, target.expr).toContain(variable);
        }
      }
    }
    const titles = dashboard.panels.map((p) => p.title);
    expect(titles).toEqual(expect.arrayContaining(["Publish lag", "GitHub rate limit left"]));
  });
});
