// Text helpers every fake provider shares: how an answer is cut into stream
// pieces, and the stable vectors embeddings answer with.

// Splits text into pieces: by words (each keeps its trailing space) unless
// a count is asked for, then into that many near-equal slices (the text is
// repeated if it is too short to give every slice a character).
export function splitPieces(text, count) {
  if (!count) {
    const words = text.match(/\S+\s*|\s+/g) ?? [];
    return words.length ? words : [text];
  }
  while (text.length < count) text = `${text} ${text}`;
  const pieces = [];
  for (let i = 0; i < count; i++) {
    pieces.push(text.slice(Math.floor((i * text.length) / count), Math.floor(((i + 1) * text.length) / count)));
  }
  return pieces;
}

// A deterministic unit-ish vector for a text (not meaningful, just stable).
export function embeddingOf(text, dims) {
  const v = [];
  let h = 2166136261;
  for (let i = 0; i < dims; i++) {
    for (const ch of `${i}:${text}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    v.push(Number(((h / 4294967295) * 2 - 1).toFixed(6)));
  }
  return v;
}
