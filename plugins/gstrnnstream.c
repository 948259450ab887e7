/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's per-stream processing (see gstrnnstream.h).
 *
 * Output buffers come from a GstBufferPool of the element's own (with the
 * allocator and parameters of the allocation query), so a steady stream
 * allocates nothing per buffer; see acquire_output(). */
#include "gstrnnstream.h"

#include <string.h>

GST_DEBUG_CATEGORY_EXTERN (gst_rnn_filter_debug);
#define GST_CAT_DEFAULT gst_rnn_filter_debug

/* Unidirectional steps per rnn_forward() call: bounds the scratch memory for
 * huge buffers.  The core gives bit-identical results for any split. */
#define MAX_CHUNK_STEPS 1024

/* Output buffers up to this size come from the element's buffer pool; larger
 * ones (a whole file in one buffer) are allocated on their own so that the
 * pool never keeps a huge block alive. */
#define POOL_MAX_BUFFER_SIZE (4u << 20)

/* rnnfilter-output messages that may wait on the bus at once: an
 * application that does not drain the bus (or does not keep up with
 * message-interval=1 faster than real time) holds at most this many; the
 * rest are skipped and counted. */
#define MAX_OUTSTANDING_MESSAGES 1000

void
gst_rnn_stream_init (GstRnnStream *st, GstBaseTransform *trans)
{
  memset (st, 0, sizeof (*st));
  st->trans = trans;
  st->base_pts = GST_CLOCK_TIME_NONE;
  st->need_base = TRUE;
}

/* Frees everything the stream holds; it can be used again after
 * gst_rnn_stream_configure(). */
void
gst_rnn_stream_clear (GstRnnStream *st)
{
  gst_rnn_stream_release_pool (st);
  g_clear_pointer (&st->state, rnn_state_free);
  g_clear_pointer (&st->fw, rnn_forward_free);
  g_clear_object (&st->adapter);
  g_clear_pointer (&st->x, g_free);
  g_clear_pointer (&st->y, g_free);
  st->x_len = st->y_len = 0;
  g_clear_pointer (&st->bad.in_run, g_free);
  st->bad.n_channels = 0;
  g_clear_pointer (&st->bad_out.in_run, g_free);
  st->bad_out.n_channels = 0;
}

/* Zero the hidden state; the next output buffer is marked DISCONT. */
void
gst_rnn_stream_reset_state (GstRnnStream *st)
{
  if (st->state)
    rnn_state_reset (st->state);
  st->steps = 0;
  st->discont = TRUE;
}

/* Forgets the frames held and the time base, and resets the state. */
void
gst_rnn_stream_reset (GstRnnStream *st)
{
  if (st->adapter)
    gst_adapter_clear (st->adapter);
  gst_rnn_stream_reset_state (st);
  st->need_base = TRUE;
  st->base_pts = GST_CLOCK_TIME_NONE;
  st->in_frames = st->out_frames = 0;
  if (st->bad.in_run)
    memset (st->bad.in_run, 0, st->bad.n_channels * sizeof (gboolean));
  if (st->bad_out.in_run)
    memset (st->bad_out.in_run, 0,
        st->bad_out.n_channels * sizeof (gboolean));
}

/* A state for @l (NULL for bidirectional models). */
RnnState *
gst_rnn_stream_new_state (const RnnModel *model, const GstRnnLayout *l)
{
  return l->bidirectional ? NULL : rnn_state_new (model, l->batch);
}

/* Steps one rnn_forward() call runs on @l. */
static guint
unit_steps (const GstRnnLayout *l)
{
  return l->bidirectional ? l->window : MAX_CHUNK_STEPS;
}

/* Bytes @model needs on layout @l: our scratch x and y, the core's scratch
 * for a call of unit_steps() steps (see rnn_forward()) and the hidden
 * state.  G_MAXUINT64 if that does not even fit in 64 bits. */
static guint64
memory_need (const RnnModel *model, const GstRnnLayout *l, guint64 *scratch)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const guint64 D = cfg->bidirectional ? 2 : 1, H = cfg->hidden_size;
  const guint64 G = cfg->cell == RNN_CELL_LSTM ? 4
      : cfg->cell == RNN_CELL_GRU ? 3 : 1;
  guint64 tb, per_step, state, total;

  per_step = l->n_in + l->n_out + 2 * D * H + G * H
      + (cfg->has_input_norm ? l->n_in : 0);
  state = l->bidirectional ? 0
      : (guint64) cfg->num_layers * D * H
      * (cfg->cell == RNN_CELL_LSTM ? 2 : 1);
  if (!g_uint64_checked_mul (&tb, unit_steps (l), l->batch)
      || !g_uint64_checked_mul (scratch, tb, per_step)
      || !g_uint64_checked_mul (scratch, *scratch, sizeof (float))
      || !g_uint64_checked_mul (&state, state,
          (guint64) l->batch * sizeof (float))
      || !g_uint64_checked_add (&total, *scratch, state))
    return *scratch = G_MAXUINT64;
  return total;
}

static gchar *
format_bytes (guint64 bytes)
{
  return bytes == G_MAXUINT64 ? g_strdup ("more than 16 EB")
      : g_format_size_full (bytes, G_FORMAT_SIZE_IEC_UNITS);
}

/* TRUE if the memory @model needs on @l can be allocated: tried with a
 * checked allocation, so a window or channel count too large is refused
 * with the arithmetic instead of aborting in an allocation later. */
gboolean
gst_rnn_stream_check_memory (const RnnModel *model, const GstRnnLayout *l,
    gchar **why)
{
  guint64 scratch, need = memory_need (model, l, &scratch);
  gpointer probe = NULL;
  gchar *size;

  if (need < G_MAXSIZE)
    probe = g_try_malloc ((gsize) need);
  if (probe) {
    g_free (probe);
    return TRUE;
  }
  size = format_bytes (need);
  if (l->bidirectional)
    *why = g_strdup_printf ("a window of %u steps of %u stream%s needs %s of "
        "scratch memory (window × streams × %" G_GUINT64_FORMAT " bytes per "
        "step), which cannot be allocated: lower the window property",
        l->window, l->batch, gst_rnn_plural (l->batch), size,
        scratch / ((guint64) l->window * l->batch));
  else
    *why = g_strdup_printf ("%u stream%s of this model need %s of scratch "
        "memory and state, which cannot be allocated: use fewer channels",
        l->batch, gst_rnn_plural (l->batch), size);
  g_free (size);
  return FALSE;
}

/* A new negotiated layout @l for @model: a fresh stream.  FALSE (and *why)
 * if its memory cannot be allocated; the stream is then unconfigured. */
gboolean
gst_rnn_stream_configure (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, gchar **why)
{
  gst_rnn_stream_reset (st);
  g_clear_pointer (&st->state, rnn_state_free);
  if (!gst_rnn_stream_check_memory (model, l, why))
    return FALSE;
  st->state = gst_rnn_stream_new_state (model, l);
  g_free (st->bad.in_run);
  st->bad.in_run = g_new0 (gboolean, l->in_channels);
  st->bad.n_channels = l->in_channels;
  g_free (st->bad_out.in_run);
  st->bad_out.in_run = g_new0 (gboolean, l->out_channels);
  st->bad_out.n_channels = l->out_channels;
  return TRUE;
}

/* A new model, laid out @nl where @l was: the hidden state carries over
 * when @model has the same state shapes and framing, else it restarts from
 * @model's initial state (and the next buffer is DISCONT).  A carried state
 * is copied into a state of @model, so that every later reset returns to
 * @model's rnn.h0 / rnn.c0, not to the old model's. */
void
gst_rnn_stream_swap (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, const GstRnnLayout *nl)
{
  gboolean carry = st->state && !nl->bidirectional && nl->batch == l->batch
      && nl->f_in == l->f_in && nl->f_out == l->f_out
      && rnn_state_fits (st->state, model);
  RnnState *old = st->state;

  st->state = gst_rnn_stream_new_state (model, nl);
  if (carry) {
    const RnnConfig *cfg = rnn_model_get_config (model);
    const guint D = rnn_model_get_num_directions (model);
    const gsize bytes = (gsize) nl->batch * cfg->hidden_size * sizeof (float);

    for (guint k = 0; k < cfg->num_layers; k++)
      for (guint d = 0; d < D; d++) {
        memcpy (rnn_state_h (st->state, k, d), rnn_state_h (old, k, d), bytes);
        if (cfg->cell == RNN_CELL_LSTM)
          memcpy (rnn_state_c (st->state, k, d), rnn_state_c (old, k, d),
              bytes);
      }
    rnn_state_free (old);
    return;
  }
  g_clear_pointer (&old, rnn_state_free);
  if (!l->bidirectional || !nl->bidirectional)
    gst_rnn_stream_reset_state (st);
}

static void
ensure_scratch (GstRnnStream *st, const GstRnnLayout *l, guint T)
{
  gsize nx = (gsize) T * l->batch * l->n_in;
  gsize ny = (gsize) T * l->batch * l->n_out;

  if (nx > st->x_len) {
    g_free (st->x);
    st->x = g_new (float, nx);
    st->x_len = nx;
  }
  if (ny > st->y_len) {
    g_free (st->y);
    st->y = g_new (float, ny);
    st->y_len = ny;
  }
}

static GstClockTime
out_time (GstRnnStream *st, const GstRnnLayout *l, guint64 out_frame)
{
  if (!GST_CLOCK_TIME_IS_VALID (st->base_pts))
    return GST_CLOCK_TIME_NONE;
  return st->base_pts + gst_util_uint64_scale_int_round (out_frame,
      GST_SECOND, l->out_rate);
}

static void
message_freed (gpointer data, GstMiniObject *message)
{
  GstRnnStream *st = data;

  g_atomic_int_add (&st->outstanding, -1);
}

/* One rnnfilter-output message per core stream for step @t of the chunk
 * whose first output frame is @first_out (since the base), unless
 * MAX_OUTSTANDING_MESSAGES of ours are still on the bus: then it is
 * skipped, and the first of a run of skipped messages posts a warning.
 * A message holds the element, so the counter outlives it. */
static void
post_step_message (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, guint t, guint64 first_out)
{
  GstClockTime ts = out_time (st, l, first_out + (guint64) t * l->f_out);

  for (guint b = 0; b < l->batch; b++) {
    GstMessage *m;

    if (g_atomic_int_get (&st->outstanding) >= MAX_OUTSTANDING_MESSAGES) {
      st->skipped++;
      if (!st->skipping) {
        st->skipping = TRUE;
        GST_ELEMENT_WARNING (st->trans, CORE, TOO_LAZY,
            ("The bus is not drained: %d rnnfilter-output messages are "
                "waiting, skipping new ones (%" G_GUINT64_FORMAT " so far)",
                MAX_OUTSTANDING_MESSAGES, st->skipped),
            ("pop the bus, or raise message-interval"));
      }
      continue;
    }
    st->skipping = FALSE;
    m = gst_message_new_element (GST_OBJECT (st->trans),
        gst_rnn_layout_output_structure (l, model, st->y, t, b, ts));
    g_atomic_int_inc (&st->outstanding);
    gst_mini_object_weak_ref (GST_MINI_OBJECT_CAST (m), message_freed, st);
    gst_element_post_message (GST_ELEMENT (st->trans), m);
  }
}

/* Runs T steps (the first @frames input frames are real, the rest zero) and
 * writes @out_frames output frames.  @first_out: output frame index (since
 * the base) of the chunk, for message timestamps. */
static void
run_chunk (GstRnnStream *st, const RnnModel *model, const GstRnnLayout *l,
    const guint8 *in, guint64 frames, guint T, float *out, guint64 out_frames,
    guint64 first_out)
{
  ensure_scratch (st, l, T);
  gst_rnn_layout_fill_input (l, st->x, in, frames, T, &st->bad);
  rnn_forward (st->fw, model, l->bidirectional ? NULL : st->state,
      st->x, T, l->batch, st->y);
  gst_rnn_layout_scrub_output (l, st->y, T, &st->bad_out);
  gst_rnn_layout_write_output (l, out, st->y, out_frames);

  if (st->interval > 0) {
    for (guint t = 0; t < T; t++)
      if ((st->steps + t + 1) % st->interval == 0)
        post_step_message (st, model, l, t, first_out);
  }
  st->steps += T;
}

/* An output buffer of @size bytes.  Pool buffers have the largest size
 * seen so far (at least doubling when it grows) and are cut to @size; a
 * stream of equal buffers allocates only while the pool fills up to the
 * number of buffers in flight downstream. */
static GstBuffer *
acquire_output (GstRnnStream *st, gsize size)
{
  GstAllocator *allocator = NULL;
  GstAllocationParams params;
  GstBuffer *buf = NULL;

  gst_base_transform_get_allocator (st->trans, &allocator, &params);
  if (size == 0 || size > POOL_MAX_BUFFER_SIZE) {
    buf = gst_buffer_new_allocate (allocator, size, &params);
    goto done;
  }
  if (!st->pool || size > st->pool_size) {
    gsize pool_size = MIN (MAX (size, 2 * st->pool_size),
        POOL_MAX_BUFFER_SIZE);
    GstBufferPool *pool = gst_buffer_pool_new ();
    GstStructure *config = gst_buffer_pool_get_config (pool);

    gst_buffer_pool_config_set_params (config, NULL, pool_size, 0, 0);
    gst_buffer_pool_config_set_allocator (config, allocator, &params);
    if (!gst_buffer_pool_set_config (pool, config)
        || !gst_buffer_pool_set_active (pool, TRUE)) {
      GST_WARNING_OBJECT (st->trans, "could not set up a buffer pool of %"
          G_GSIZE_FORMAT "-byte buffers", pool_size);
      gst_object_unref (pool);
      buf = gst_buffer_new_allocate (allocator, size, &params);
      goto done;
    }
    GST_DEBUG_OBJECT (st->trans, "buffer pool of %" G_GSIZE_FORMAT
        "-byte buffers", pool_size);
    if (st->pool) {
      /* buffers still downstream go back to the old pool, which frees them */
      gst_buffer_pool_set_active (st->pool, FALSE);
      gst_object_unref (st->pool);
    }
    st->pool = pool;
    st->pool_size = pool_size;
  }
  if (gst_buffer_pool_acquire_buffer (st->pool, &buf, NULL) != GST_FLOW_OK)
    buf = NULL;
  else
    gst_buffer_set_size (buf, size);

done:
  if (allocator)
    gst_object_unref (allocator);
  return buf;
}

void
gst_rnn_stream_release_pool (GstRnnStream *st)
{
  if (st->pool) {
    gst_buffer_pool_set_active (st->pool, FALSE);
    gst_clear_object (&st->pool);
  }
  st->pool_size = 0;
}

/* Records where @inbuf (taken) sits in time and adds it to the adapter. */
void
gst_rnn_stream_take_input (GstRnnStream *st, const GstRnnLayout *l,
    GstBuffer *inbuf)
{
  const gsize bpf = (gsize) l->in_channels * sizeof (float);
  GstClockTime pts = GST_BUFFER_PTS (inbuf);

  if (st->need_base) {
    /* frames still held from before the base belong to it */
    st->in_frames = gst_adapter_available (st->adapter) / bpf;
    st->out_frames = 0;
    st->base_pts = GST_CLOCK_TIME_NONE;
    st->need_base = FALSE;
  }
  if (!GST_CLOCK_TIME_IS_VALID (st->base_pts)
      && GST_CLOCK_TIME_IS_VALID (pts)) {
    GstClockTime before = gst_util_uint64_scale_int_round (st->in_frames,
        GST_SECOND, l->in_rate);

    st->base_pts = pts >= before ? pts - before : 0;
    st->base_offset = gst_util_uint64_scale_int_round (st->base_pts,
        l->out_rate, GST_SECOND);
    GST_DEBUG_OBJECT (st->trans, "time base %" GST_TIME_FORMAT,
        GST_TIME_ARGS (st->base_pts));
  }
  st->in_frames += gst_buffer_get_size (inbuf) / bpf;
  gst_adapter_push (st->adapter, inbuf);
}

/* Runs every complete step (unidirectional) or window (bidirectional) held
 * by the adapter; with @drain also what is left (see the EOS rule in the
 * element documentation).  *outbuf is NULL if there was nothing to run. */
GstFlowReturn
gst_rnn_stream_process (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, gboolean drain, GstBuffer **outbuf)
{
  const gsize bpf_in = (gsize) l->in_channels * sizeof (float);
  const gsize bpf_out = (gsize) l->out_channels * sizeof (float);
  const guint unit_steps = l->bidirectional ? l->window : 1;
  const guint64 unit = (guint64) l->f_in * unit_steps;
  guint64 avail, full_steps, rest, in_total, out_total, done;
  const guint8 *in;
  GstBuffer *buf;
  GstMapInfo map;
  float *out;

  *outbuf = NULL;
  if (!st->adapter || !model || bpf_in == 0)
    return GST_FLOW_OK;

  avail = gst_adapter_available (st->adapter) / bpf_in;
  full_steps = avail / unit * unit_steps;
  rest = drain ? avail % unit : 0;
  in_total = full_steps * l->f_in + rest;
  if (in_total == 0)
    return GST_FLOW_OK;
  out_total = gst_rnn_layout_output_frames (l, full_steps, rest);

  buf = acquire_output (st, out_total * bpf_out);
  if (!buf || !gst_buffer_map (buf, &map, GST_MAP_WRITE)) {
    gst_clear_buffer (&buf);
    GST_ELEMENT_ERROR (st->trans, RESOURCE, FAILED, (NULL),
        ("could not allocate an output buffer of %" G_GUINT64_FORMAT " bytes",
            (guint64) (out_total * bpf_out)));
    return GST_FLOW_ERROR;
  }
  out = (float *) map.data;
  in = gst_adapter_map (st->adapter, in_total * bpf_in);

  st->bad.new_runs = st->bad_out.new_runs = 0;
  for (done = 0; done < full_steps;) {
    guint T = l->bidirectional ? l->window
        : (guint) MIN (full_steps - done, MAX_CHUNK_STEPS);

    run_chunk (st, model, l, in + done * l->f_in * bpf_in,
        (guint64) T * l->f_in, T, out + done * l->f_out * l->out_channels,
        (guint64) T * l->f_out, st->out_frames + done * l->f_out);
    done += T;
  }
  if (rest > 0) {
    guint T = (guint) ((rest + l->f_in - 1) / l->f_in);

    run_chunk (st, model, l, in + done * l->f_in * bpf_in, rest, T,
        out + done * l->f_out * l->out_channels,
        out_total - done * l->f_out, st->out_frames + done * l->f_out);
  }

  gst_adapter_unmap (st->adapter);
  gst_adapter_flush (st->adapter, in_total * bpf_in);
  gst_buffer_unmap (buf, &map);

  if (st->bad.new_runs > 0) {
    GST_ELEMENT_WARNING (st->trans, STREAM, FORMAT,
        ("Non-finite input replaced by 0.0 (%" G_GUINT64_FORMAT " value%s so "
            "far)", st->bad.total, gst_rnn_plural (st->bad.total)),
        ("%u new run%s of non-finite values, the first in channel %u",
            st->bad.new_runs, gst_rnn_plural (st->bad.new_runs),
            st->bad.first_channel));
  }

  if (st->bad_out.new_runs > 0) {
    GST_ELEMENT_WARNING (st->trans, STREAM, FAILED,
        ("Non-finite model output replaced by 0.0 (%" G_GUINT64_FORMAT
            " value%s so far)", st->bad_out.total,
            gst_rnn_plural (st->bad_out.total)),
        ("%u new run%s of non-finite outputs, the first in output channel %u",
            st->bad_out.new_runs, gst_rnn_plural (st->bad_out.new_runs),
            st->bad_out.first_channel));
  }

  GST_BUFFER_PTS (buf) = out_time (st, l, st->out_frames);
  GST_BUFFER_DTS (buf) = GST_CLOCK_TIME_NONE;
  if (GST_BUFFER_PTS_IS_VALID (buf))
    GST_BUFFER_DURATION (buf) =
        out_time (st, l, st->out_frames + out_total) - GST_BUFFER_PTS (buf);
  else
    GST_BUFFER_DURATION (buf) =
        gst_util_uint64_scale_int_round (st->out_frames + out_total,
        GST_SECOND, l->out_rate) -
        gst_util_uint64_scale_int_round (st->out_frames, GST_SECOND,
        l->out_rate);
  GST_BUFFER_OFFSET (buf) = st->base_offset + st->out_frames;
  GST_BUFFER_OFFSET_END (buf) = GST_BUFFER_OFFSET (buf) + out_total;
  st->out_frames += out_total;

  if (st->discont) {
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
    st->discont = FALSE;
  }
  *outbuf = buf;
  return GST_FLOW_OK;
}

/* Processes and pushes whatever the adapter holds, partial step and window
 * included, then forgets any stray bytes. */
GstFlowReturn
gst_rnn_stream_drain (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l)
{
  GstBuffer *out = NULL;
  GstFlowReturn ret;

  if (!st->adapter)
    return GST_FLOW_OK;
  ret = gst_rnn_stream_process (st, model, l, TRUE, &out);
  gst_adapter_clear (st->adapter);
  if (out) {
    GST_DEBUG_OBJECT (st->trans, "draining %" GST_PTR_FORMAT, out);
    ret = gst_pad_push (st->trans->srcpad, out);
  }
  return ret;
}
