// Prints one line per genlbridge record of a JetStream stream, every field
// exact with a plain JSON.parse: 64-bit values beyond 2^53-1 come as
// strings (BigInt takes both forms), times as RFC 3339 text.
//   node consumer.mjs nats://127.0.0.1:4222 GENL
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";

const [server = "nats://127.0.0.1:4222", stream = "GENL"] = process.argv.slice(2);
const u64 = (v) => BigInt(v); // a number, or a string of digits

// canonical is JSON with sorted keys (JSON.stringify keeps integer-like
// keys first, in numeric order).
function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v !== null && typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}

const nc = await connect({ servers: server });
const js = jetstream(nc);
const consumer = await js.consumers.get(stream); // an ordered consumer
let pending = (await consumer.info(true)).num_pending;
while (pending-- > 0) {
  const m = await consumer.next({ expires: 10000 });
  for (const line of m.string().trim().split("\n")) {
    const r = JSON.parse(line);
    if (r.type === "loss") {
      console.log(`loss ${r.host} ${r.family}/${r.group} reason=${r.reason} count=${u64(r.count)} ` +
        `seq=${u64(r.first_seq ?? 0)}-${u64(r.last_seq ?? 0)} time=${r.time}`);
    } else {
      console.log(`event ${r.host} ${r.family}/${r.group} seq=${u64(r.seq)} instance=${r.instance} ` +
        `time=${r.recv_time} attrs=${canonical(r.attrs ?? {})}`);
    }
  }
}
await nc.close();
