import { describe, expect, it } from "vitest";
import {
  ANNOTATION,
  indexAnnotations,
  provenanceAnnotations,
} from "../../src/domain/provenance.js";
import { imageManifest } from "../../src/registry/image-manifest.js";
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  OCI_CONFIG,
  OCI_LAYER_GZIP,
  OCI_MANIFEST,
} from "../../src/registry/media-types.js";
import { provenanceFrom } from "../../src/sync/image-provenance.js";
import { makeMetadata } from "../testbed/run-fixtures.js";

const PRESTO = "92865fbce0d2a056af5334a0afecc1f36853b657";
const VELOX = "65797d572e0a297fa898e4f6ab4c1afc75fe3419";
const metadata = makeMetadata({
  prestoRef: PRESTO,
  veloxRef: VELOX,
  platform: "linux/amd64",
  mode: "all_native",
});

describe("provenance annotations", () => {
  it("names the run, the refs, the time and the tag, from the metadata block", () => {
    expect(
      provenanceAnnotations({
        metadata,
        gitlabTag: "presto-92865fbce0d2-velox-65797d572e0a",
        runId: 1234,
        runUrl: "https://github.com/rapidsai/velox-testing/actions/runs/1234",
      }),
    ).toEqual({
      [ANNOTATION.created]: "2025-10-01T12:00:00Z",
      [ANNOTATION.source]: "https://github.com/prestodb/presto",
      [ANNOTATION.revision]: PRESTO,
      [ANNOTATION.version]: "presto-92865fbce0d2-velox-65797d572e0a",
      [ANNOTATION.url]: "https://github.com/rapidsai/velox-testing/actions/runs/1234",
      [ANNOTATION.description]: `Velox rapidsai/velox@${VELOX}, platform linux/amd64, bundle all_native, run 1234`,
    });
  });

  it("leaves out what the block lacks or gets wrong, rather than guessing", () => {
    const annotations = provenanceAnnotations({
      metadata: {
        "Presto repository": "not a repository",
        "Generated at": "yesterday",
        "Target platform": "linux/arm64",
      },
      gitlabTag: "t",
      runUrl: "javascript:alert(1)",
    });
    expect(annotations).toEqual({
      [ANNOTATION.version]: "t",
      [ANNOTATION.description]: "platform linux/arm64",
    });
  });

  it("reads metadata.json as download writes it (run id, _run_info.htmlUrl)", () => {
    const of = provenanceFrom({
      ...metadata,
      run_id: 77,
      _run_info: { htmlUrl: "https://github.com/o/r/actions/runs/77" },
    });
    expect(of("x86/presto-coordinator:presto-a-velox-b")).toMatchObject({
      [ANNOTATION.version]: "presto-a-velox-b",
      [ANNOTATION.url]: "https://github.com/o/r/actions/runs/77",
      [ANNOTATION.description]: expect.stringMatching(/, run 77$/) as string,
    });
    expect(of("not a tag")).toBeUndefined();
  });

  it("an index keeps what its entries share, the newest created, and every description", () => {
    const amd = {
      [ANNOTATION.created]: "2025-10-01T12:00:00Z",
      [ANNOTATION.revision]: "abc",
      [ANNOTATION.url]: "u1",
      [ANNOTATION.description]: "platform linux/amd64, run 1",
    };
    const arm = {
      [ANNOTATION.created]: "2025-10-02T08:00:00Z",
      [ANNOTATION.revision]: "abc",
      [ANNOTATION.url]: "u2",
      [ANNOTATION.description]: "platform linux/arm64, run 2",
    };
    expect(indexAnnotations([{ annotations: amd }, { annotations: arm }, {}])).toEqual({
      [ANNOTATION.created]: "2025-10-02T08:00:00Z",
      [ANNOTATION.revision]: "abc",
      [ANNOTATION.description]: "platform linux/amd64, run 1; platform linux/arm64, run 2",
    });
    expect(indexAnnotations([{ annotations: amd }])).toEqual(amd);
    expect(indexAnnotations([{}, {}])).toEqual({});
  });
});

describe("the manifest builder", () => {
  const config = { digest: `sha256:${"c".repeat(64)}`, size: 1234 };
  const layers = [{ digest: `sha256:${"1".repeat(64)}`, size: 10, mediaType: DOCKER_LAYER_GZIP }];

  it("without annotations: Docker schema 2, as docker push writes it", () => {
    const { bytes, mediaType } = imageManifest(config, layers);
    expect(mediaType).toBe(DOCKER_MANIFEST);
    const json = JSON.parse(bytes.toString()) as Record<string, unknown>;
    expect(json).toEqual({
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: { mediaType: DOCKER_CONFIG, size: 1234, digest: config.digest },
      layers: [{ mediaType: DOCKER_LAYER_GZIP, size: 10, digest: layers[0]?.digest }],
    });
    expect(bytes.toString()).toContain('\n   "schemaVersion"');
  });

  it("with annotations: an OCI manifest (schema 2 has no field for them), same config and layers, sorted keys, same bytes every time", () => {
    const annotations = { "org.b": "2", "org.a": "1" };
    const first = imageManifest(config, layers, annotations);
    expect(first.mediaType).toBe(OCI_MANIFEST);
    const json = JSON.parse(first.bytes.toString()) as {
      config: { mediaType: string; digest: string };
      layers: Array<{ mediaType: string; digest: string }>;
      annotations: Record<string, string>;
    };
    expect(json.config).toEqual({ mediaType: OCI_CONFIG, size: 1234, digest: config.digest });
    expect(json.layers[0]).toMatchObject({ mediaType: OCI_LAYER_GZIP, digest: layers[0]?.digest });
    expect(Object.keys(json.annotations)).toEqual(["org.a", "org.b"]);
    expect(imageManifest(config, layers, { "org.a": "1", "org.b": "2" }).bytes).toEqual(
      first.bytes,
    );
  });
});
