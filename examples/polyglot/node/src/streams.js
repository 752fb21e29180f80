// Topics on Redis Streams, laid out as the Python SDK's transport lays them out (docs/a2a.md,
// "Transports"): a topic is the stream `<prefix>stream:<topic>` whose entries hold `id` (the
// message id) and `data` (the envelope's bytes); every topic published to is in `<prefix>topics`,
// so that wildcard subscribers find it; a consumer group of the contract is the Redis group
// `<group>@<pattern>`; what cannot be handled goes to `<prefix>deadletter`, with its reason.

import Redis from "ioredis";

export class Streams {
  constructor(url, { prefix = "cmo:a2a:" } = {}) {
    this.redis = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
    this.reader = this.redis.duplicate(); // blocking reads get a connection of their own
    this.prefix = prefix;
  }

  key(topic) {
    return `${this.prefix}stream:${topic}`;
  }

  async publish(topic, messageId, data) {
    await this.redis.multi().xadd(this.key(topic), "MAXLEN", "~", 100000, "*", "id", messageId, "data", data)
      .sadd(`${this.prefix}topics`, topic).exec();
  }

  /** Make the group on a topic (reading what is published from now on), once. */
  async join(topic, group) {
    try {
      await this.redis.xgroup("CREATE", this.key(topic), `${group}@${topic}`, "$", "MKSTREAM");
    } catch (err) {
      if (!String(err.message).includes("BUSYGROUP")) throw err;
    }
  }

  /** Up to `count` entries for this consumer: `[{ entryId, messageId, data }]`, waiting up to `blockMs`. */
  async read(topic, group, consumer, { count = 16, blockMs = 1000 } = {}) {
    const batches = await this.reader.xreadgroup(
      "GROUP", `${group}@${topic}`, consumer, "COUNT", count, "BLOCK", blockMs, "STREAMS", this.key(topic), ">",
    );
    const entries = [];
    for (const [, items] of batches ?? []) {
      for (const [entryId, fields] of items) {
        const named = {};
        for (let i = 0; i < fields.length; i += 2) named[fields[i]] = fields[i + 1];
        entries.push({ entryId, messageId: named.id ?? "", data: named.data ?? "" });
      }
    }
    return entries;
  }

  async ack(topic, group, entryId) {
    await this.redis.xack(this.key(topic), `${group}@${topic}`, entryId);
  }

  /** Dead-letter an entry with its reason, then ack it: nothing refused is dropped silently. */
  async deadLetter(topic, group, entry, reason, detail) {
    await this.redis.xadd(
      `${this.prefix}deadletter`, "*", "topic", topic, "message_id", entry.messageId, "data", entry.data,
      "reason", reason, "detail", detail.slice(0, 4096), "deliveries", "1", "group", group,
    );
    await this.ack(topic, group, entry.entryId);
  }

  close() {
    this.reader.disconnect();
    this.redis.disconnect();
  }
}
