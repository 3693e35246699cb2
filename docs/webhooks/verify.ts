// Receives keyward webhooks, with node:crypto and node:http only.
//
//   KEYWARD_WEBHOOK_SECRET=whsec_... node verify.js   # compiled with tsc; listens on 127.0.0.1:8000
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import { pathToFileURL } from "node:url";

export const TOLERANCE_SECONDS = 5 * 60;

/** The delivery is not from keyward, or not from now: answer 400 and drop it. */
export class WebhookVerificationError extends Error {}

function header(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return typeof value === "string" ? value : "";
}

function base64Tag(text: string): Buffer {
  const bytes = Buffer.from(text, "base64");
  // Buffer.from skips characters it does not know: re-encoding catches them.
  if (bytes.toString("base64") !== text || bytes.length !== 32) {
    throw new WebhookVerificationError("a v1 signature is the base64 of 32 bytes");
  }
  return bytes;
}

/**
 * Throws WebhookVerificationError unless the raw `body` and `headers` (lower-case names, as
 * node:http gives them) are a delivery signed with `secret` (whsec_...) within the last or next
 * five minutes.
 */
export function verify(
  secret: string,
  headers: IncomingHttpHeaders,
  body: Buffer,
  nowSeconds: number = Date.now() / 1000,
): void {
  if (!secret.startsWith("whsec_")) {
    throw new Error("a keyward webhook secret starts with whsec_");
  }
  const key = Buffer.from(secret.slice("whsec_".length), "base64");
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const entries = header(headers, "webhook-signature").split(/\s+/).filter((e) => e !== "");
  if (id === "") {
    throw new WebhookVerificationError("missing webhook-id");
  }
  if (!/^[0-9]+$/.test(timestamp)) {
    throw new WebhookVerificationError("webhook-timestamp is not whole unix seconds");
  }
  if (entries.length === 0) {
    throw new WebhookVerificationError("missing webhook-signature");
  }

  const candidates: Buffer[] = [];
  for (const entry of entries) {
    const comma = entry.indexOf(",");
    const version = entry.slice(0, comma);
    const value = entry.slice(comma + 1);
    if (comma < 0 || version === "" || value === "") {
      throw new WebhookVerificationError("malformed webhook-signature");
    }
    if (version === "v1") {
      candidates.push(base64Tag(value));
    }
  }

  if (Math.abs(nowSeconds - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new WebhookVerificationError("webhook-timestamp is too old or too new");
  }

  const expected = createHmac("sha256", key)
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest();
  // timingSafeEqual takes the same time wherever the bytes differ; every candidate is compared.
  const matches = candidates.map((tag) => timingSafeEqual(expected, tag));
  if (!matches.includes(true)) {
    throw new WebhookVerificationError("no signature matches");
  }
}

function serve(secret: string, port: number): void {
  createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        verify(secret, req.headers, body);
      } catch (e) {
        if (!(e instanceof WebhookVerificationError)) throw e;
        res.writeHead(400).end(e.message);
        return;
      }
      // Parse only after the raw bytes are verified.
      const event = JSON.parse(body.toString("utf8")) as { type: string };
      // De-duplicate on webhook-id: a retried or resent event keeps its id.
      console.log(header(req.headers, "webhook-id"), event.type);
      res.writeHead(204).end();
    });
  }).listen(port, "127.0.0.1");
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const secret = process.env.KEYWARD_WEBHOOK_SECRET ?? "";
  if (!secret.startsWith("whsec_")) {
    throw new Error("set KEYWARD_WEBHOOK_SECRET to the endpoint's whsec_ secret");
  }
  serve(secret, Number(process.env.PORT ?? "8000"));
}
