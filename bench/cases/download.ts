/**
 * B2: downloading the ~2 GiB images artifact, against `curl -L -o` of the same URL, and against
 * the standard tools' verified download, `curl -L … | tee FILE | sha256sum`.
 */
import { stat as statFile } from "node:fs/promises";
import path from "node:path";
import { GITHUB_TOKEN } from "../../test/testbed/index.js";
import { DEFAULT_REPO } from "../../test/testbed/run-fixtures.js";
import { settle, type BenchContext } from "../context.js";
import { q } from "../data.js";
import {
  BrokenBenchmark,
  alternate,
  formatBytes,
  formatRate,
  formatStat,
  ours,
  peakRss,
  stat,
  timed,
} from "../harness.js";
import { ratio, verdict, type Row } from "../report.js";

const RSS_LIMIT_KIB = 150 * 1024;

export async function benchDownload(ctx: BenchContext): Promise<Row[]> {
  const artifact = await ctx.artifact("big");
  const size = artifact.fixture.size;
  return ctx.withTestbed("b2-testbed", artifact, async (tb) => {
    const scratch = await ctx.scratch("b2");
    const download = async (dir: string) =>
      ours(["download", artifact.imageTag, "--output-dir", dir, ...tb.githubArgs], {
        env: tb.env,
        scratch,
      });
    const oursSide = async () => {
      const dir = await ctx.scratch("b2/ours");
      await settle(scratch);
      return download(dir);
    };
    // The API answers 302 to the blob host; curl does not carry the token to another host:port.
    const url = `${tb.github.url}/repos/${DEFAULT_REPO}/actions/artifacts/${artifact.runId * 10}/zip`;
    const auth = `Authorization: Bearer ${GITHUB_TOKEN}`;
    const peerSide = async () => {
      const file = path.join(await ctx.scratch("b2/curl"), "artifact.zip");
      await settle(scratch);
      const sample = await timed("curl", ["-sS", "-f", "-L", "-H", auth, "-o", file, url], {
        scratch,
      });
      if ((await statFile(file)).size !== size)
        throw new BrokenBenchmark("B2: curl got a short file");
      return sample;
    };
    // What an operator would run to get a checked file with the standard tools.
    const verifiedSide = async () => {
      const file = path.join(await ctx.scratch("b2/curl-tee"), "artifact.zip");
      await settle(scratch);
      const line = `curl -sS -f -L -H ${q(auth)} ${q(url)} | tee ${q(file)} | sha256sum`;
      const sample = await timed("bash", ["-euo", "pipefail", "-c", line], { scratch });
      if (!sample.stdout.startsWith(artifact.fixture.digest.replace("sha256:", ""))) {
        throw new BrokenBenchmark("B2: curl | tee | sha256sum got other bytes");
      }
      return sample;
    };
    const [oursRuns, peerRuns, verifiedRuns] = await alternate(ctx.runs, [
      oursSide,
      peerSide,
      verifiedSide,
    ]);

    // The resume: the blob host drops the connection half-way through; the same command resumes.
    const resumeDir = await ctx.scratch("b2/resume");
    tb.github.resetRequests();
    tb.github.injectFault({
      match: "/artifacts/",
      host: "blob",
      cutAfterBytes: Math.floor(size / 2),
    });
    await download(resumeDir);
    const transfers = tb.github.requests.filter(
      (r) => r.host === "blob" && r.path.startsWith("/artifacts/") && r.bytesSent > 0,
    );
    if (transfers.length < 2) throw new BrokenBenchmark("B2: the cut did not happen");
    const resumed = transfers.slice(1).reduce((sum, r) => sum + r.bytesSent, 0);

    const rate = (ms: number) => size / (ms / 1000);
    const oursRate = stat(oursRuns.map((s) => rate(s.ms))).median;
    const peerRate = stat(peerRuns.map((s) => rate(s.ms))).median;
    const verifiedRate = stat(verifiedRuns.map((s) => rate(s.ms))).median;
    const peakKiB = Math.max(...oursRuns.map((s) => s.rssKiB ?? Infinity));
    return [
      {
        id: "B2",
        figure: `download throughput, ${formatBytes(size)} artifact (size, SHA-256 and metadata.json included)`,
        ours: formatStat(
          oursRuns.map((s) => rate(s.ms)),
          formatRate,
        ),
        peer: formatStat(
          peerRuns.map((s) => rate(s.ms)),
          formatRate,
        ),
        ratio: ratio(oursRate, peerRate),
        target: "≥ 0.8×",
        verdict: verdict(oursRate >= 0.8 * peerRate),
        rss: peakRss(oursRuns),
      },
      {
        id: "B2",
        figure:
          "download throughput against the standard tools' verified download (curl | tee | sha256sum)",
        ours: formatStat(
          oursRuns.map((s) => rate(s.ms)),
          formatRate,
        ),
        peer: formatStat(
          verifiedRuns.map((s) => rate(s.ms)),
          formatRate,
        ),
        ratio: ratio(oursRate, verifiedRate),
        target: "≥ 1.5×",
        verdict: verdict(oursRate >= 1.5 * verifiedRate),
      },
      {
        id: "B2",
        figure: "peak RSS while downloading",
        ours: peakRss(oursRuns),
        peer: peakRss(peerRuns),
        ratio: "—",
        target: "≤ 150 MiB",
        verdict: verdict(peakKiB <= RSS_LIMIT_KIB),
      },
      {
        id: "B2",
        figure: "bytes fetched by the resume after a cut at 50 % (one run: bytes do not vary)",
        ours: `${formatBytes(resumed)} (${((100 * resumed) / size).toFixed(1)} %)`,
        peer: "—",
        ratio: "—",
        target: "≤ 55 %",
        verdict: verdict(resumed <= 0.55 * size),
      },
    ];
  });
}
