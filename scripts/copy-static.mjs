#!/usr/bin/env node
// After tsc: the dashboard's static files (src/http/static/) go next to the compiled server.
import { cpSync, mkdirSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
mkdirSync(`${root}dist/http/static`, { recursive: true });
cpSync(`${root}src/http/static`, `${root}dist/http/static`, { recursive: true });
