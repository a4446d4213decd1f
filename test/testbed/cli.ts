/**
 * `npm run testbed`: the whole testbed for a person — GitHub and GitLab stand-ins, a real registry
 * with GitLab-style token auth — seeded with the demo's builds, up until Ctrl-C. It prints what to
 * export in another shell; the README's five-minute walkthrough starts from there.
 */
import { startTestbed, testbedExports } from "./index.js";
import { seedDemo } from "./demo-data.js";

process.stdout.write("Starting the GitHub and GitLab stand-ins and a real registry ...\n");
const tb = await startTestbed();
process.stdout.write("Making the demo's builds (one GitLab has, two it lacks) ...\n");
await seedDemo(tb);
const shellQuote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
const lines = [
  "",
  "gh-gitlab-sync testbed is up. In another shell, in this checkout:",
  "",
  'export PATH="$PWD/bin:$PATH"',
  ...Object.entries(testbedExports(tb)).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
  "gh-gitlab-sync xref",
  "",
  `scratch: ${tb.dir}`,
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
