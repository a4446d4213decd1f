import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // End-to-end files each start their own testbed (registry, stand-ins); two at a time fits 2 cores.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
