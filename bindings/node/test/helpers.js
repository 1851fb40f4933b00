// @ts-check
'use strict';
// Shared by the tests: fresh folders, and reading every stored byte.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

/** @type {string[]} */
const made = [];
process.on('exit', () => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A fresh, empty folder removed when the process exits. */
function tempDir(name = 'auditlog-node-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), name));
  made.push(dir);
  return dir;
}

/** A path inside a fresh folder, not created yet (open it with `create`). */
function logDir() {
  return path.join(tempDir(), 'log');
}

/** Every file under `dir`, recursively. @param {string} dir @returns {string[]} */
function filesUnder(dir) {
  /** @type {string[]} */
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

/** The files under `dir` whose bytes contain `needle` (UTF-8). @param {string} dir @param {string} needle */
function filesContaining(dir, needle) {
  const bytes = Buffer.from(needle, 'utf8');
  return filesUnder(dir).filter((f) => fs.readFileSync(f).includes(bytes));
}

module.exports = { tempDir, logDir, filesUnder, filesContaining };
