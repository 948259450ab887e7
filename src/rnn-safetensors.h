/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The raw safetensors reader (docs/design.md §3): the container's own
 * checks, with no knowledge of models.  The model loader
 * (rnn-modelfile.c), the fixtures and the tests use it. */
#pragma once

#include "rnn.h"

G_BEGIN_DECLS

typedef enum {
  RNN_DTYPE_F32, RNN_DTYPE_F16, RNN_DTYPE_BF16, RNN_DTYPE_F64,
  RNN_DTYPE_OTHER,               /* recognised by the parser, not convertible */
} RnnDtype;

typedef struct {
  const char *name;
  RnnDtype dtype;
  const char *dtype_name;        /* as in the file: "F32", "I64", ... */
  guint ndim;
  guint64 shape[8];
  guint64 numel;
  const guint8 *data;            /* unaligned; into the parsed bytes */
  gsize nbytes;
} RnnStTensor;

typedef struct _RnnSafetensors RnnSafetensors;

/* Applies all of safetensors' own checks.  @data must outlive the result. */
RnnSafetensors *rnn_safetensors_parse (const guint8 *data, gsize size,
    const char *display_name, GError **error);
void rnn_safetensors_free (RnnSafetensors *st);
guint rnn_safetensors_get_n_tensors (const RnnSafetensors *st);
/* Tensors in the order of their data offsets. */
const RnnStTensor *rnn_safetensors_get_tensor (const RnnSafetensors *st, guint i);
const RnnStTensor *rnn_safetensors_find (const RnnSafetensors *st, const char *name);
/* __metadata__ string values, or NULL. */
const char *rnn_safetensors_get_meta (const RnnSafetensors *st, const char *key);
/* Copies the tensor into @out (numel floats), converting F16/BF16/F64.
 * The error names the tensor; callers prefix the file name. */
gboolean rnn_safetensors_read_f32 (const RnnStTensor *t, float *out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnSafetensors, rnn_safetensors_free)

/* ---- reading a file without holding all of it ---------------------------- */

/* The header length N from the first 8 bytes of a file of @file_size bytes,
 * checked against the file (0 < N <= 100,000,000, 8 + N <= @file_size).
 * @data holds at least 8 bytes unless @file_size < 8 (refused). */
gboolean rnn_safetensors_header_length (const guint8 *data, guint64 file_size,
    const char *display_name, guint64 *header_len, GError **error);

/* rnn_safetensors_parse () of a file of @file_size bytes whose first @avail
 * are in @data: at least 8 + N (the length field and the header), or all
 * of it.  Every check of the header against the file is made (offsets
 * against the real data region).  When @avail < @file_size the tensors'
 * data is NULL: read them at rnn_safetensors_get_file_offset ().  A header
 * with more than @max_tensors tensors or @max_meta_keys __metadata__ keys
 * is refused while it is scanned, before any tree is built for them
 * (G_MAXUINT: no bound). */
RnnSafetensors *rnn_safetensors_parse_head (const guint8 *data, gsize avail,
    guint64 file_size, guint max_tensors, guint max_meta_keys,
    const char *display_name, GError **error);

/* Where @t's bytes start in the file (from its first byte). */
guint64 rnn_safetensors_get_file_offset (const RnnSafetensors *st,
    const RnnStTensor *t);

/* Converts elements [@first, @first + @count) of @t, whose bytes are at
 * @src, into @out, as rnn_safetensors_read_f32 () does (the same errors,
 * the same indices in them): for reading a tensor piece by piece. */
gboolean rnn_safetensors_convert_f32 (const RnnStTensor *t,
    const guint8 *src, gsize first, gsize count, float *out, GError **error);

/* ---- for the model-file code ---------------------------------------------- */

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
