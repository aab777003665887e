import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The page consumes the exported ABI package (../abi, "@ballast/abi") as a front end would.
const abiDir = fileURLToPath(new URL('../abi', import.meta.url));

export default defineConfig({
  base: './',
  resolve: { alias: { '@ballast/abi': abiDir } },
  server: { fs: { allow: ['..'] } },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 1000 },
});
