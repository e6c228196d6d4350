// Vite builds index.html (and main.ts through it) for the browser: `npx vite build`.
import {defineConfig} from 'vite';

export default defineConfig({
  base: './',
  build: {
    // tfjs with three backends is one large chunk; that is expected here.
    chunkSizeWarningLimit: 8000,
    reportCompressedSize: false,
  },
});
