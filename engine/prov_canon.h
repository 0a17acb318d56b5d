/*
 * prov_canon.h — the normalisations of a request body before it is keyed,
 * shared by the provider adapters (internal to engine/prov_*.c, like
 * prov_json.h), so that one request sent in different SDK call styles gets
 * one key, and anything that can change the answer still gets another.
 *
 * Applied to the parsed body, after the adapter removed its volatile fields
 * and before the canonical dump (which sorts keys and drops whitespace):
 *
 *  - Number spelling of request parameters: 0, 0.0, 0e0, -0 and -0.0 are
 *    one value, and so are 1 and 1.0 (integers and floats with no fraction
 *    are the same number to the JSON parsers of the APIs: Python's json,
 *    then pydantic's lax ints). Only for the parameters themselves (the
 *    body's top-level members, Gemini's generationConfig, Ollama's
 *    options): numbers inside messages, tool schemas or tool arguments are
 *    text the model reads, where "1.0" and "1" are different tokens.
 *  - A parameter the client spelled with the value the API documents as its
 *    default is dropped, so sending it and leaving it out key alike (the
 *    table in prov_canon.c, with the documentation each row relies on).
 *
 * Not normalised, on purpose: strings (a value is what the model reads),
 * and object keys, Unicode included. The API's own field names are ASCII;
 * a non-ASCII key is the client's own (a tool's property name, metadata),
 * and the answer may repeat it byte for byte (a tool call's arguments use
 * the schema's property names), so an NFD client must not get the answer
 * to the NFC spelling: its code would not find the argument.
 *
 * Also sets info->tools: the request offers the model tools (a non-empty
 * list), for [upstream.X] cache_tools.
 */
#ifndef RELAY_ENGINE_PROV_CANON_H
#define RELAY_ENGINE_PROV_CANON_H

#include <jansson.h>

#include "engine/prov.h"

/* Normalises root (a request body object of format and endpoint) in
 * place. RL_NOMEM when a replacement value could not be made (root is
 * then partly normalised and must not be keyed). */
rl_err prov_canon(json_t *root, const char *format, const char *endpoint, prov_info *info);

#endif
