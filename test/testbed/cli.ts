/**
 * `npm run testbed`: the whole testbed for a person — GitHub and GitLab stand-ins, a real registry
 * with GitLab-style token auth — seeded with demo runs, up until Ctrl-C.
 */
import { startTestbed } from "./index.js";
import { seedDemo } from "./demo-data.js";

const tb = await startTestbed();
await seedDemo(tb);
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
const lines = [
  "gh-gitlab-sync testbed is up. In another shell:",
  "",
  ...Object.entries(tb.env).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
  `export GITHUB_API_URL=${tb.github.url}`,
  `export GITLAB_URL=${tb.gitlab.url}`,
  `export REGISTRY=${tb.gitlab.registryHost}`,
  "",
  "./bin/gh-gitlab-sync gh-list",
  './bin/gh-gitlab-sync gitlab-list --gitlab-host "$GITLAB_URL"',
  './bin/gh-gitlab-sync xref --gitlab-host "$GITLAB_URL"',
  "",
  `registry: ${tb.gitlab.registryHost} (user ${tb.registryArgs[3]}, password ${tb.registryArgs[5]})`,
  `scratch:  ${tb.dir}`,
  "Ctrl-C stops everything and removes the scratch directory.",
];
process.stdout.write(`${lines.join("\n")}\n`);

const stop = async () => {
  await tb.stop();
  process.exit(0);
};
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
// Stay up until told to stop.
setInterval(() => undefined, 1 << 30);
