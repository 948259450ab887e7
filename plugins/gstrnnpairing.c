/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain's pairing of sink and target frames (docs/design.md §4). */
#include "gstrnnpairing.h"

#include <gst/audio/audio.h>
#include <math.h>
#include <string.h>

GST_DEBUG_CATEGORY_EXTERN (gst_rnn_train_debug);
#define GST_CAT_DEFAULT gst_rnn_train_debug

/* Grows *@buf to hold at least @n elements of @size bytes. */
static gpointer
grow (gpointer buf, gsize * cap, gsize n, gsize size)
{
  if (n <= *cap)
    return buf;
  gsize c = MAX (*cap, 64);
  while (c < n)
    c *= 2;
  *cap = c;
  return g_realloc_n (buf, c, size);
}

/* Checks that the model's framing fits the streams. */
static gboolean
check_framing (GstRnnPairing * p, guint n_in)
{
  GstElement *self = p->element;

  if (n_in != p->f_in * p->c_in) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The model takes %u inputs per step (frame size %u) but the sink "
            "stream has %u channels.", n_in, p->f_in, p->c_in), (NULL));
    return FALSE;
  }
  if (p->class_index) {
    if (p->f_out != 1) {
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
          ("loss=cross-entropy gives one class per step: output-frame-size "
              "must be 1, not %u.", p->f_out), (NULL));
      return FALSE;
    }
  } else if (p->n_out != p->f_out * p->c_tgt) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The model has %u outputs per step (output frame size %u) but the "
            "target has %u channels.", p->n_out, p->f_out, p->c_tgt), (NULL));
    return FALSE;
  }
  if (p->f_out > p->f_in) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("output-frame-size %u is larger than frame-size %u: a step's target "
            "is the last output-frame-size frames of its span.", p->f_out,
            p->f_in), (NULL));
    return FALSE;
  }
  if (((guint64) p->rate * p->f_out) % p->f_in != 0) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The output rate %u x %u / %u Hz is not a whole number; choose a "
            "frame-size that divides the rate.", p->rate, p->f_out, p->f_in),
        (NULL));
    return FALSE;
  }
  return TRUE;
}

gboolean
gst_rnn_pairing_configure (GstRnnPairing * p, const RnnModel * model,
    gboolean has_target, gboolean class_index, guint rate, guint c_in,
    guint c_tgt, guint predict_ahead, guint window)
{
  const RnnConfig *cfg = rnn_model_get_config (model);

  p->has_target = has_target;
  p->class_index = class_index;
  p->rate = rate;
  p->c_in = c_in;
  p->c_tgt = c_tgt;
  p->f_in = cfg->frame_size;
  p->f_out = cfg->output_frame_size;
  p->n_in = p->f_in * c_in;
  p->n_out = rnn_model_get_output_size (model);
  p->n_tgt = class_index ? 1 : p->n_out;
  p->rec = p->n_in + p->n_tgt + 1;
  p->predict_ahead = predict_ahead;
  p->window = window;
  if (!check_framing (p, cfg->input_size))
    return FALSE;

  g_free (p->step);
  p->step = g_new0 (float, p->rec);
  g_clear_pointer (&p->fw, rnn_forward_free);
  g_clear_pointer (&p->pstate, rnn_state_free);
  g_clear_pointer (&p->pwin, g_free);
  p->fw = rnn_forward_new ();
  if (window == 0)
    p->pstate = rnn_state_new (model, 1);
  else
    p->pwin = g_new (float, (gsize) window * p->n_in);
  return TRUE;
}

/* ---- caps ------------------------------------------------------------- */

static GstRnnLane *
lane_of (GstRnnPairing * p, GstAggregatorPad * pad)
{
  for (guint i = 0; i < GST_RNN_N_LANES; i++)
    if (p->lanes[i].pad == pad)
      return &p->lanes[i];
  return NULL;
}

gint
gst_rnn_pairing_other_rate (GstRnnPairing * p, GstAggregatorPad * pad)
{
  gint rate = 0;

  for (guint i = 0; i < GST_RNN_N_LANES; i++)
    if (p->lanes[i].pad && p->lanes[i].pad != pad && p->lanes[i].rate)
      rate = p->lanes[i].rate;
  return rate;
}

gboolean
gst_rnn_pairing_set_caps (GstRnnPairing * p, GstAggregatorPad * pad,
    GstCaps * caps, gboolean class_index, gboolean configured)
{
  GstElement *self = p->element;
  gint rate = 0, channels = 0;
  GstStructure *st = gst_caps_get_structure (caps, 0);

  if (!gst_structure_get_int (st, "rate", &rate)
      || !gst_structure_get_int (st, "channels", &channels)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("Caps without rate and channels: %" GST_PTR_FORMAT, caps), (NULL));
    return FALSE;
  }

  GST_OBJECT_LOCK (self);
  GstRnnLane *l = lane_of (p, pad);
  const gint other_rate = gst_rnn_pairing_other_rate (p, pad);
  const gboolean is_target = l == &p->lanes[GST_RNN_LANE_TARGET];
  const gint old_rate = l ? l->rate : 0, old_channels = l ? l->channels : 0;
  GST_OBJECT_UNLOCK (self);

  if (!l)
    return FALSE;
  if (other_rate && other_rate != rate) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The sink and target pads have different sample rates (%d Hz on "
            "%s, %d Hz on the other).", rate, GST_PAD_NAME (pad), other_rate),
        ("Put an audioresample in front of one of them."));
    return FALSE;
  }
  if (is_target && class_index && channels != 1) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("loss=cross-entropy needs a one-channel class-index target; the "
            "target has %d channels.", channels), (NULL));
    return FALSE;
  }
  if (configured && (rate != old_rate || channels != old_channels)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The caps of %s changed during the stream (%d Hz, %d channels -> "
            "%d Hz, %d channels); rnntrain cannot change its model's shape.",
            GST_PAD_NAME (pad), old_rate, old_channels, rate, channels),
        (NULL));
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  l->rate = rate;
  l->channels = channels;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* ---- predictions: steps back to frames ---------------------------------- */

void
gst_rnn_pairing_out_flush (GstRnnPairing * p)
{
  if (p->out_steps == 0)
    return;
  const gsize bytes = p->out_steps * p->n_out * sizeof (float);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, bytes, NULL);
  gst_buffer_fill (buf, 0, p->out, bytes);
  const guint64 f0 = p->out_frame0, f1 = f0 + p->out_steps * p->f_in;
  const GstClockTime t0 = gst_util_uint64_scale_round (f0, GST_SECOND,
      p->rate);
  const GstClockTime t1 = gst_util_uint64_scale_round (f1, GST_SECOND,
      p->rate);
  GST_BUFFER_PTS (buf) = t0;
  GST_BUFFER_DURATION (buf) = t1 - t0;
  if (f0 % p->f_in == 0) {
    GST_BUFFER_OFFSET (buf) = f0 / p->f_in * p->f_out;
    GST_BUFFER_OFFSET_END (buf) = f1 / p->f_in * p->f_out;
  }
  if (p->out_discont)
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
  p->out_discont = FALSE;
  p->out_steps = 0;

  p->push (p->push_data, buf, t1);
}

/* Appends the outputs of @n steps starting at input frame @frame0. */
static void
out_append (GstRnnPairing * p, guint64 frame0, const float *y, gsize n)
{
  if (p->out_steps > 0 && frame0 != p->out_frame0 + p->out_steps * p->f_in)
    gst_rnn_pairing_out_flush (p);
  if (p->have_out_next && frame0 != p->out_next)
    p->out_discont = TRUE;
  if (p->out_steps == 0)
    p->out_frame0 = frame0;
  p->out_next = frame0 + n * p->f_in;
  p->have_out_next = TRUE;
  p->out = grow (p->out, &p->out_cap, (p->out_steps + n) * p->n_out,
      sizeof (float));
  memcpy (p->out + p->out_steps * p->n_out, y, n * p->n_out * sizeof (float));
  p->out_steps += n;
}

static void
pred_scratch (GstRnnPairing * p, gsize n)
{
  p->px = grow (p->px, &p->px_cap, n * p->n_in, sizeof (float));
  p->py = grow (p->py, &p->py_cap, n * p->n_out, sizeof (float));
}

static void
pred_window_flush (GstRnnPairing * p, const RnnModel * model)
{
  if (p->pwin_len == 0)
    return;
  pred_scratch (p, p->pwin_len);
  rnn_forward (p->fw, model, NULL, p->pwin, p->pwin_len, 1, p->py);
  out_append (p, p->pwin_frame0, p->py, p->pwin_len);
  p->pwin_len = 0;
}

void
gst_rnn_pairing_predict (GstRnnPairing * p, const RnnModel * model)
{
  const gsize n = p->n_steps;
  const guint win = p->window;

  if (p->window > 0) {
    for (gsize i = 0; i < n; i++) {
      const guint64 f = p->steps_frame0[i];
      if (p->pwin_len > 0
          && f != p->pwin_frame0 + (guint64) p->pwin_len * p->f_in)
        pred_window_flush (p, model);
      if (p->pwin_len == 0)
        p->pwin_frame0 = f;
      memcpy (p->pwin + (gsize) p->pwin_len * p->n_in,
          p->steps + i * p->rec, p->n_in * sizeof (float));
      if (++p->pwin_len == win)
        pred_window_flush (p, model);
    }
    return;
  }

  gsize i = 0;
  while (i < n) {
    /* one run of consecutive steps */
    gsize j = i + 1;
    while (j < n && p->steps_frame0[j] == p->steps_frame0[j - 1] + p->f_in)
      j++;
    if (p->have_out_next && p->steps_frame0[i] != p->out_next)
      rnn_state_reset (p->pstate);
    pred_scratch (p, j - i);
    for (gsize k = i; k < j; k++)
      memcpy (p->px + (k - i) * p->n_in, p->steps + k * p->rec,
          p->n_in * sizeof (float));
    rnn_forward (p->fw, model, p->pstate, p->px, j - i, 1, p->py);
    out_append (p, p->steps_frame0[i], p->py, j - i);
    i = j;
  }
}


void
gst_rnn_pairing_predict_finish (GstRnnPairing * p, const RnnModel * model)
{
  if (p->window > 0)
    pred_window_flush (p, model);
  gst_rnn_pairing_out_flush (p);
}

/* ---- framing ------------------------------------------------------------ */

static void
steps_push (GstRnnPairing * p)
{
  p->steps = grow (p->steps, &p->steps_cap, p->n_steps + 1,
      p->rec * sizeof (float));
  p->steps_frame0 = g_realloc_n (p->steps_frame0, p->steps_cap,
      sizeof (guint64));
  memcpy (p->steps + p->n_steps * p->rec, p->step, p->rec * sizeof (float));
  p->steps_frame0[p->n_steps++] = p->step_frame0;
}

/* Adds @n paired frames starting at frame index @frame: input frames at @x
 * (c_in floats each), target frames at @t (@t_stride floats apart). */
static GstFlowReturn
frame_pairs (GstRnnPairing * p, const float *x, const float *t, gsize t_stride,
    gsize n, guint64 frame)
{
  const guint tail = p->f_in - p->f_out;        /* first frame with a target */
  float *in = p->step, *tg = p->step + p->n_in;
  float *mask = tg + p->n_tgt;

  if (p->have_next_pair && frame != p->next_pair)
    p->step_fill = 0;           /* a jump: drop the partial step */
  p->next_pair = frame + n;
  p->have_next_pair = TRUE;

  for (gsize k = 0; k < n; k++) {
    const float *xf = x + k * p->c_in, *tf = t + k * t_stride;
    const guint j = p->step_fill;
    if (j == 0) {
      p->step_frame0 = frame + k;
      *mask = 1.0f;
    }
    for (guint c = 0; c < p->c_in; c++) {
      float v = xf[c];
      if (!isfinite (v)) {
        v = 0.0f;
        p->bad_total++;
      }
      in[j * p->c_in + c] = v;
    }
    if (j >= tail) {
      if (p->class_index) {
        if (j == p->f_in - 1) {
          const float v = tf[0];
          if (!isfinite (v)) {
            *mask = 0.0f;
            tg[0] = 0.0f;
            p->bad_total++;
          } else if (v < 0.0f) {
            *mask = 0.0f;       /* no label */
            tg[0] = 0.0f;
          } else if (v != floorf (v) || v >= (float) p->n_out) {
            GST_ELEMENT_ERROR (p->element, STREAM, FORMAT,
                ("The target holds %g at %" GST_TIME_FORMAT ", which is not a "
                    "class index in [0, %u) (loss=cross-entropy, num-classes "
                    "%u).", v, GST_TIME_ARGS (gst_util_uint64_scale_round (frame
                            + k, GST_SECOND, p->rate)), p->n_out, p->n_out),
                (NULL));
            return GST_FLOW_ERROR;
          } else {
            tg[0] = v;
          }
        }
      } else {
        float *dst = tg + (j - tail) * p->c_tgt;
        for (guint c = 0; c < p->c_tgt; c++) {
          const float v = tf[c];
          if (!isfinite (v)) {
            *mask = 0.0f;
            dst[c] = 0.0f;
            p->bad_total++;
          } else {
            dst[c] = v;
          }
        }
      }
    }
    if (++p->step_fill == p->f_in) {
      steps_push (p);
      p->step_fill = 0;
    }
  }
  return GST_FLOW_OK;
}

/* ---- lanes -------------------------------------------------------------- */

static void
lane_drop (GstRnnLane * l, guint64 n)
{
  n = MIN (n, (guint64) l->len);
  memmove (l->data, l->data + n * l->channels,
      (l->len - n) * l->channels * sizeof (float));
  l->len -= n;
  l->first += n;
}

static void
lane_reset (GstRnnLane * l)
{
  l->started = FALSE;
  l->first = 0;
  l->len = 0;
}

static void
lane_append_nan (GstRnnLane * l, gsize n)
{
  l->data = grow (l->data, &l->cap, (l->len + n) * l->channels, sizeof (float));
  float *d = l->data + l->len * l->channels;
  for (gsize i = 0; i < n * l->channels; i++)
    d[i] = NAN;
  l->len += n;
}

gboolean
gst_rnn_pairing_push (GstRnnPairing * p, guint lane, GstAggregatorPad * pad,
    GstBuffer * buf)
{
  GstRnnLane *l = &p->lanes[lane];
  GstSegment seg;
  GstMapInfo map;
  const gsize bpf = (gsize) l->channels * sizeof (float);
  gboolean reset = FALSE;

  GST_OBJECT_LOCK (pad);
  seg = pad->segment;
  GST_OBJECT_UNLOCK (pad);

  if (seg.format == GST_FORMAT_TIME) {
    buf = gst_audio_buffer_clip (buf, &seg, l->rate, (gint) bpf);
    if (!buf)
      return TRUE;
  }
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    gst_buffer_unref (buf);
    return TRUE;
  }
  gsize n = map.size / bpf;
  const float *d = (const float *) map.data;
  guint64 expect = l->first + l->len, frame = expect;

  if (GST_BUFFER_PTS_IS_VALID (buf) && seg.format == GST_FORMAT_TIME) {
    const guint64 rt = gst_segment_to_running_time (&seg, GST_FORMAT_TIME,
        GST_BUFFER_PTS (buf));
    if (rt != GST_CLOCK_TIME_NONE)
      frame = gst_util_uint64_scale_round (rt, l->rate, GST_SECOND);
  }
  if (!l->started) {
    l->started = TRUE;
    l->first = frame;
    l->len = 0;
  } else {
    const guint64 tol = MAX (1, (guint64) l->rate / 2000);      /* 0.5 ms */
    if (frame + tol >= expect && frame <= expect + tol) {
      frame = expect;
    } else if (frame < expect) {
      const guint64 skip = expect - frame;      /* overlap */
      if (skip >= n)
        n = 0;
      else {
        d += skip * l->channels;
        n -= skip;
      }
      frame = expect;
    } else if (frame - expect <= (guint64) l->rate) {
      GST_DEBUG_OBJECT (p->element, "%s: bridging a gap of %" G_GUINT64_FORMAT
          " frames", GST_PAD_NAME (pad), frame - expect);
      lane_append_nan (l, frame - expect);
    } else {
      GST_WARNING_OBJECT (p->element, "%s: gap of %" G_GUINT64_FORMAT
          " frames, restarting the pairing", GST_PAD_NAME (pad),
          frame - expect);
      reset = TRUE;
    }
  }
  if (n > 0) {
    if (!l->have_span) {
      l->have_span = TRUE;
      l->span_first = frame;
      l->span_end = frame;
    }
    l->span_first = MIN (l->span_first, frame);
    l->span_end = MAX (l->span_end, frame + n);
  }
  if (!reset && n > 0) {
    l->data = grow (l->data, &l->cap, (l->len + n) * l->channels,
        sizeof (float));
    memcpy (l->data + l->len * l->channels, d, n * bpf);
    l->len += n;
  }
  gst_buffer_unmap (buf, &map);

  if (reset) {
    /* keep this buffer as the start of a new run on this lane; the other
     * lane's buffered frames cannot be paired across the gap either */
    for (guint i = 0; i < GST_RNN_N_LANES; i++)
      if (&p->lanes[i] != l)
        lane_reset (&p->lanes[i]);
    l->first = frame;
    l->len = 0;
    l->data = grow (l->data, &l->cap, n * l->channels, sizeof (float));
    if (gst_buffer_map (buf, &map, GST_MAP_READ)) {
      memcpy (l->data, map.data, n * bpf);
      l->len = n;
      gst_buffer_unmap (buf, &map);
    }
    p->step_fill = 0;
  }
  gst_buffer_unref (buf);
  return !reset;
}

GstFlowReturn
gst_rnn_pairing_pair (GstRnnPairing * p)
{
  GstRnnLane *s = &p->lanes[GST_RNN_LANE_SINK];
  GstRnnLane *t = &p->lanes[GST_RNN_LANE_TARGET];

  p->n_steps = 0;
  if (!p->has_target) {
    const guint64 d = (guint64) p->predict_ahead * p->f_in;
    if (s->len > d) {
      const gsize n = s->len - d;
      GstFlowReturn r = frame_pairs (p, s->data, s->data + d * s->channels,
          s->channels, n, s->first);
      lane_drop (s, n);
      return r;
    }
    return GST_FLOW_OK;
  }

  while (s->started && t->started) {
    if (s->first < t->first) {
      const guint64 k = MIN (t->first - s->first, (guint64) s->len);
      if (k == 0)
        break;
      lane_drop (s, k);
      continue;
    }
    if (t->first < s->first) {
      const guint64 k = MIN (s->first - t->first, (guint64) t->len);
      if (k == 0)
        break;
      lane_drop (t, k);
      continue;
    }
    const gsize n = MIN (s->len, t->len);
    if (n == 0)
      break;
    GstFlowReturn r = frame_pairs (p, s->data, t->data, t->channels, n,
        s->first);
    lane_drop (s, n);
    lane_drop (t, n);
    if (r != GST_FLOW_OK)
      return r;
  }
  return GST_FLOW_OK;
}

void
gst_rnn_pairing_flush (GstRnnPairing * p)
{
  for (guint i = 0; i < GST_RNN_N_LANES; i++)
    lane_reset (&p->lanes[i]);
  p->step_fill = 0;
  p->have_next_pair = FALSE;
  p->out_steps = 0;
  p->have_out_next = FALSE;
  p->pwin_len = 0;
  if (p->pstate)
    rnn_state_reset (p->pstate);
}

void
gst_rnn_pairing_clear (GstRnnPairing * p)
{
  for (guint i = 0; i < GST_RNN_N_LANES; i++) {
    lane_reset (&p->lanes[i]);
    g_clear_pointer (&p->lanes[i].data, g_free);
    p->lanes[i].cap = 0;
    p->lanes[i].have_span = FALSE;
  }
  g_clear_pointer (&p->step, g_free);
  g_clear_pointer (&p->steps, g_free);
  g_clear_pointer (&p->steps_frame0, g_free);
  p->n_steps = p->steps_cap = 0;
  p->step_fill = 0;
  p->have_next_pair = FALSE;
  p->bad_total = 0;
  g_clear_pointer (&p->fw, rnn_forward_free);
  g_clear_pointer (&p->pstate, rnn_state_free);
  g_clear_pointer (&p->px, g_free);
  g_clear_pointer (&p->py, g_free);
  p->px_cap = p->py_cap = 0;
  g_clear_pointer (&p->pwin, g_free);
  p->pwin_len = 0;
  g_clear_pointer (&p->out, g_free);
  p->out_steps = p->out_cap = 0;
  p->have_out_next = FALSE;
  p->out_discont = FALSE;
}

gchar *
gst_rnn_pairing_describe_mismatch (GstRnnPairing * p)
{
  const GstRnnLane *s = &p->lanes[GST_RNN_LANE_SINK];
  const GstRnnLane *t = &p->lanes[GST_RNN_LANE_TARGET];
  const double rate = MAX (p->rate, 1);

  if (!p->has_target || !s->have_span)
    return NULL;
  const guint64 ns = s->span_end - s->span_first;
  if (!t->have_span)
    return g_strdup_printf ("The target pad brought no data: the input's %"
        G_GUINT64_FORMAT " frames (%.3f s) were not trained on.", ns,
        ns / rate);
  const guint64 nt = t->span_end - t->span_first;
  const guint64 a = MAX (s->span_first, t->span_first);
  const guint64 b = MIN (s->span_end, t->span_end);
  const guint64 both = b > a ? b - a : 0;
  const guint64 tol = MAX (1, p->rate / 2000);  /* 0.5 ms, as the pairing */

  if (ns <= both + tol && nt <= both + tol)
    return NULL;
  return g_strdup_printf ("The target (%" G_GUINT64_FORMAT " frames, %.3f s) "
      "is %s than the input (%" G_GUINT64_FORMAT " frames, %.3f s)%s: "
      "trained on the %" G_GUINT64_FORMAT " frames (%.3f s) where both are "
      "present, the rest was dropped.", nt, nt / rate,
      nt < ns ? "shorter" : nt > ns ? "longer" : "as long", ns, ns / rate,
      s->span_first != t->span_first ? " and starts at another time" : "",
      both, both / rate);
}
