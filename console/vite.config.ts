import { defineConfig } from "vite";

// Served by services/console under /console/ behind Envoy, which also carries the REST API (/ml/*):
// the page calls only its own origin.
export default defineConfig({
  base: "/console/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, target: "es2022" },
});
