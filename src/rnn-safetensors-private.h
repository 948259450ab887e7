/* Internal helpers of the safetensors reader shared with the model-file code.
 * Not part of the public API in rnn.h. */
#pragma once

#include "rnn.h"

G_BEGIN_DECLS

/* The display name given to rnn_safetensors_parse(). */
const char *rnn_safetensors_get_display_name (const RnnSafetensors *st);

/* The keys of __metadata__, sorted (strcmp), NULL-terminated; owned by @st.
 * Empty (not NULL) when the file has no __metadata__. */
const char *const *rnn_safetensors_get_meta_keys (const RnnSafetensors *st);

/* TRUE if the file has a __metadata__ object (possibly empty). */
gboolean rnn_safetensors_has_meta (const RnnSafetensors *st);

/* @s made printable for an error message: escaped, at most about 64
 * characters.  Free with g_free(). */
char *rnn_st_quote (const char *s);

G_END_DECLS
