/*
 * xlate_responses.h — what the OpenAI Responses dialect (xl_openai_responses,
 * engine/xlate_responses.c) needs beyond the xl_dialect contract.
 *
 * Its stream encoder must repeat the whole answer at the end
 * (response.completed carries every output item, and each *.done event the
 * item's full text), so its state holds copies of what was streamed, in
 * memory of its own (enc_event has no pool). XL_EV_END and XL_EV_ERROR free
 * them; a stream abandoned before either (the client left) must call
 * xlate_responses_enc_release, which is also the dialect's
 * xl_dialect.enc_release (translate.c calls that one).
 */
#ifndef RELAY_ENGINE_XLATE_RESPONSES_H
#define RELAY_ENGINE_XLATE_RESPONSES_H

/* Frees what the encoder state (enc_size bytes) holds; the state is then
 * as if zeroed. Safe on a zeroed state and after END or ERROR. */
void xlate_responses_enc_release(void *state);

#endif
