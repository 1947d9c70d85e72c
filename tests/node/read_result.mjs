// A Node.js auditor client for monoculture: reads a completed round's typed result
// (monoculture.v1.RoundResult, docs/PROTOCOL.md "Typed result") from the coordinator over
// mutual TLS with the auditor's certificate, and prints its figures. It never reads the
// result JSON: every figure comes from a typed field of the proto.
//
//   npm ci --prefix tests/node
//   node tests/node/read_result.mjs --coordinator 127.0.0.1:50051 --certs certs ROUND_ID
//
// --certs: the folder with ca.pem, auditor.pem and auditor.key (`monoculture certs`).
// Prints one JSON object (written here from the typed fields) on standard output; exits 2 with
// the coordinator's reason when the call is refused. tests/test_node_client.py runs it.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: options, positionals } = parseArgs({
  options: {
    coordinator: { type: "string", default: "127.0.0.1:50051" },
    certs: { type: "string", default: "certs" },
    protos: { type: "string", default: path.join(here, "..", "..", "protos") },
  },
  allowPositionals: true,
});
if (positionals.length !== 1) {
  console.error("usage: read_result.mjs [--coordinator HOST:PORT] [--certs FOLDER] ROUND_ID");
  process.exit(2);
}
const roundId = positionals[0];

// keepCase: the proto's field names; longs as numbers (counts are far below 2^53); enums by
// name; defaults false, so an unset optional figure (withheld or undefined) stays absent.
const definition = protoLoader.loadSync("monoculture/v1/monoculture.proto", {
  includeDirs: [options.protos],
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
});
const v1 = grpc.loadPackageDefinition(definition).monoculture.v1;
const read = (name) => readFileSync(path.join(options.certs, name));
const credentials = grpc.credentials.createSsl(read("ca.pem"), read("auditor.key"), read("auditor.pem"));
const client = new v1.AuditorService(options.coordinator, credentials);

// With defaults off a zero scalar is absent: these give it back (an absent optional is null).
const number = (value) => value ?? 0;
const optional = (value) => (value === undefined ? null : value);
const interval = (value) => (value ? [number(value.low), number(value.high)] : null);

function figures(result) {
  const byCompany = (pick) =>
    Object.fromEntries((result.company_figures ?? []).map((c) => [c.company, pick(c)]));
  const dp = result.release_policy?.differential_privacy;
  const made = result.round ?? {};
  return {
    round_id: result.round_id,
    companies: result.companies ?? [],
    k: number(result.company_count),
    withheld: result.withheld ?? false,
    noisy: result.noisy ?? false,
    N: optional(result.shared_individuals),
    failures: byCompany((c) => optional(c.failures)),
    failure_rates: byCompany((c) => optional(c.failure_rate)),
    failure_rate_ci95: byCompany((c) => interval(c.failure_rate_ci95)),
    S: optional(result.systemic_failure_rate),
    S_ci95: interval(result.systemic_failure_rate_ci95),
    H: optional(result.homogenization),
    H_ci95: interval(result.homogenization_ci95),
    patterns: Object.fromEntries(
      (result.patterns ?? []).map((cell) => [cell.pattern, cell.suppressed ? null : number(cell.count)]),
    ),
    release_policy: {
      exact: !dp,
      mechanism: dp ? dp.mechanism : "none",
      epsilon: dp ? number(dp.epsilon) : 0,
      min_shared_individuals: number(result.release_policy?.min_shared_individuals),
      min_cell_count: number(result.release_policy?.min_cell_count),
    },
    round: {
      protocol_version: number(made.protocol_version),
      failure_tags: made.failure_tags ?? "TAG_MODE_UNSPECIFIED",
      dummies: made.dummies ? { epsilon: number(made.dummies.epsilon), delta: number(made.dummies.delta) } : null,
      min_list_size: number(made.min_list_size),
    },
  };
}

client.GetRoundResult({ round_id: roundId }, { deadline: Date.now() + 30_000 }, (error, reply) => {
  client.close();
  if (error) {
    console.error(`read_result: the coordinator refused: ${error.details} (${grpc.status[error.code]})`);
    process.exit(2);
  }
  console.log(JSON.stringify({ phase: reply.phase, ...figures(reply.result) }));
});
