"""Generated MQTT messages for fuzzing the gateway: topics and payloads for config/devices.example.yaml's mappings.

Topics follow a mapping's template, or nearly (one level off), or not at all (random levels, unicode, wildcard
characters, up to and beyond MQTT's 65,535-byte limit). Payloads are valid for the format the topic maps to, or
for another one, mutated, random JSON trees, deep nesting, huge numbers, NaN / Infinity, random bytes, invalid
UTF-8. About half the messages are drawn "clean" (names, values and times a correct device sends, but rich in
characters that need escaping) so that the accepted path is exercised as much as the rejecting one.

One generator, two sources of choices: `ByteSource` (bytes hypothesis draws: a property test whose failures
shrink) and `RandomSource` (a seeded, reproducible corpus for a running gateway).

The modules: choices (the two sources), topics, values (JSON text, numbers, timestamps), payloads (one generator
a format), messages (any payload, and a whole message).
"""
