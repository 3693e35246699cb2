// The TypeScript half of scripts/webhook-verify-check.sh: docs/webhooks/verify.ts's verify()
// gives every vector of docs/webhooks/vectors.json its verdict.
//
//   node out/check.mjs VECTORS
import { readFileSync } from "node:fs";
import { verify, WebhookVerificationError } from "./verify.js";

interface Vector {
  name: string;
  secret: string;
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  now: number;
  valid: boolean;
}

const path = process.argv[2];
if (path === undefined) {
  throw new Error("usage: node check.mjs VECTORS");
}
const vectors = (JSON.parse(readFileSync(path, "utf8")) as { vectors: Vector[] }).vectors;

let passed = 0;
let failed = 0;
for (const v of vectors) {
  const headers = { "webhook-id": v.id, "webhook-timestamp": v.timestamp, "webhook-signature": v.signature };
  let verdict: string;
  let accepted: boolean;
  try {
    verify(v.secret, headers, Buffer.from(v.body, "utf8"), v.now);
    accepted = true;
    verdict = "accepted";
  } catch (e) {
    if (!(e instanceof WebhookVerificationError)) throw e;
    accepted = false;
    verdict = `refused: ${e.message}`;
  }
  if (accepted === v.valid) {
    passed += 1;
  } else {
    failed += 1;
    console.error(`wrong verdict: ${v.name}: ${verdict}`);
  }
}
console.log(`verify.ts: ${passed} passed, ${failed} failed`);
if (failed > 0 || passed === 0) {
  process.exit(1);
}
