// The table of one conformance run (scripts/mcp-conformance.sh):
//   node report.mjs SUITE_VERSION OUT_DIR EXPECTED_FAILURES_FILE
// OUT_DIR holds scenarios.txt and the suite's `<scenario>-<timestamp>/checks.json`.
// A scenario passes with at least one check run and none failed. Exits 1 on a failure
// that the expected-failures file does not list, or on a listed scenario that passes.
import fs from "node:fs";
import path from "node:path";

const [version, out, expectedFile] = process.argv.slice(2);
const scenarios = fs.readFileSync(path.join(out, "scenarios.txt"), "utf8").split("\n").filter(Boolean);

// `<suite version or *> <scenario> <reason>` per line; `#` starts a comment.
const expected = new Map();
if (fs.existsSync(expectedFile)) {
  for (const line of fs.readFileSync(expectedFile, "utf8").split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const [v, name, ...reason] = t.split(/\s+/);
    if (v === "*" || v === version) expected.set(name, reason.join(" "));
  }
}

function checksOf(scenario) {
  const parent = path.join(out, path.dirname(scenario));
  const base = path.basename(scenario);
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-\\d{4}-\\d{2}-\\d{2}T[\\d-]+Z$`);
  let dirs = [];
  try {
    dirs = fs.readdirSync(parent).filter((d) => re.test(d));
  } catch {}
  if (dirs.length === 0) return null;
  try {
    return JSON.parse(fs.readFileSync(path.join(parent, dirs.sort().at(-1), "checks.json"), "utf8"));
  } catch {
    return null;
  }
}

let passed = 0;
const unexpected = [];
const stale = [];
const rows = [];
for (const s of scenarios) {
  const checks = checksOf(s);
  const ok = checks ? checks.filter((c) => c.status === "SUCCESS").length : 0;
  const failed = checks ? checks.filter((c) => c.status === "FAILURE") : [];
  const warnings = checks ? checks.filter((c) => c.status === "WARNING").length : 0;
  const pass = checks !== null && ok > 0 && failed.length === 0;
  let note = "";
  if (pass) passed++;
  if (!pass && !expected.has(s)) unexpected.push(s);
  if (pass && expected.has(s)) stale.push(s);
  if (!pass) {
    note = checks === null ? "no results (the suite or the adapter crashed)"
      : ok === 0 && failed.length === 0 ? "no check ran"
      : failed.map((c) => `${c.id}: ${c.errorMessage ?? c.details?.message ?? c.description}`).join("; ");
    if (expected.has(s)) note = `expected (${expected.get(s)})`;
  }
  rows.push([pass ? "pass" : "FAIL", s, `${ok}`, `${failed.length}`, `${warnings}`, note]);
}

const w = Math.max(...scenarios.map((s) => s.length), 8);
console.log(`${"result".padEnd(6)}  ${"scenario".padEnd(w)}  ok  failed  warn  note`);
for (const [r, s, ok, f, wn, note] of rows) {
  console.log(`${r.padEnd(6)}  ${s.padEnd(w)}  ${ok.padStart(2)}  ${f.padStart(6)}  ${wn.padStart(4)}  ${note.slice(0, 300)}`);
}
console.log(`conformance ${version}: ${passed}/${scenarios.length} client scenarios passed`);
if (unexpected.length) console.log(`unexpected failures (see ${out}/*.log): ${unexpected.join(", ")}`);
if (stale.length) console.log(`now passing, drop from ${path.basename(expectedFile)}: ${stale.join(", ")}`);
process.exit(unexpected.length || stale.length ? 1 : 0);
