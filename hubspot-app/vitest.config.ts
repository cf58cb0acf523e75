import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.{ts,tsx}"],
    environment: "node",
    // The machine is shared; one worker runs these few files in about the same time.
    maxWorkers: 1,
  },
});
