/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's caps and layout algebra (docs/design.md §4): which streams a
 * model can run on, what it turns them into, the latency it adds, and the
 * packing of frames into the model's tensors and back. */
#include "gstrnnlayout.h"

#include "gstrnnelements.h"

#include <math.h>
#include <string.h>

/* Works out how @model runs on a stream of @channels at @rate, with the
 * channel-mode @mode and the window property @window.  On failure *why says
 * what the model needs (free it). */
gboolean
gst_rnn_layout_resolve (GstRnnLayout *l, const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, gint rate, gint channels,
    gchar **why)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  guint64 out_channels, out_rate;

  memset (l, 0, sizeof (*l));
  l->n_in = cfg->input_size;
  l->n_out = rnn_model_get_output_size (model);
  l->f_in = cfg->frame_size;
  l->f_out = cfg->output_frame_size;
  if (l->f_in == 0 || l->f_out == 0 || l->n_in % l->f_in != 0
      || l->n_out % l->f_out != 0) {
    *why = g_strdup_printf ("model sizes I=%u, O=%u do not divide into "
        "frame_size %u and output_frame_size %u", l->n_in, l->n_out, l->f_in,
        l->f_out);
    return FALSE;
  }
  l->c_in = l->n_in / l->f_in;
  l->c_out = l->n_out / l->f_out;
  l->in_rate = rate;
  l->in_channels = channels;

  switch (mode) {
    case GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT:
      if (l->c_in != 1) {
        *why = g_strdup_printf ("channel-mode is independent, which needs a "
            "single-channel model, but the model expects %u channels",
            l->c_in);
        return FALSE;
      }
      l->independent = TRUE;
      break;
    case GST_RNN_FILTER_CHANNEL_MODE_VECTOR:
      if ((guint) channels != l->c_in) {
        *why = g_strdup_printf ("model expects %u channel%s, stream has %d",
            l->c_in, gst_rnn_plural (l->c_in), channels);
        return FALSE;
      }
      l->independent = FALSE;
      break;
    case GST_RNN_FILTER_CHANNEL_MODE_AUTO:
    default:
      if ((guint) channels == l->c_in) {
        l->independent = FALSE;
      } else if (l->c_in == 1) {
        l->independent = TRUE;
      } else {
        *why = g_strdup_printf ("model expects %u channel%s, stream has %d",
            l->c_in, gst_rnn_plural (l->c_in), channels);
        return FALSE;
      }
      break;
  }
  l->batch = l->independent ? (guint) channels : 1;
  out_channels = (guint64) l->batch * l->c_out;
  if (out_channels > G_MAXINT) {
    *why = g_strdup_printf ("%d channels * %u outputs is too many channels",
        channels, l->c_out);
    return FALSE;
  }
  l->out_channels = out_channels;

  if (cfg->sample_rate != 0 && (guint) rate != cfg->sample_rate) {
    *why = g_strdup_printf ("model was made for %u Hz, stream has %d Hz",
        cfg->sample_rate, rate);
    return FALSE;
  }
  if ((guint64) rate * l->f_out % l->f_in != 0) {
    *why = g_strdup_printf ("output rate %d * %u / %u Hz is not a whole "
        "number (output_frame_size / frame_size of the model)", rate,
        l->f_out, l->f_in);
    return FALSE;
  }
  out_rate = (guint64) rate * l->f_out / l->f_in;
  if (out_rate == 0 || out_rate > G_MAXINT) {
    *why = g_strdup_printf ("output rate %" G_GUINT64_FORMAT " Hz is out of "
        "range", out_rate);
    return FALSE;
  }
  l->out_rate = out_rate;

  l->bidirectional = cfg->bidirectional;
  if (l->bidirectional) {
    l->window = window != 0 ? window : cfg->window;
    if (l->window == 0) {
      *why = g_strdup ("bidirectional model needs a window: set the window "
          "property or the model's window metadata");
      return FALSE;
    }
  }
  return TRUE;
}

/* The layout of @model on the stream @current was negotiated for, if it
 * gives the same output caps (a hot swap cannot renegotiate).  On failure
 * *why says why the model does not fit (free it). */
gboolean
gst_rnn_layout_resolve_swap (GstRnnLayout *nl, const GstRnnLayout *current,
    const RnnModel *model, GstRnnFilterChannelMode mode, guint window,
    gchar **why)
{
  const GstRnnLayout *l = current;

  if (!gst_rnn_layout_resolve (nl, model, mode, window, l->in_rate,
          l->in_channels, why))
    return FALSE;
  if (nl->out_rate != l->out_rate || nl->out_channels != l->out_channels) {
    *why = g_strdup_printf ("it would turn the output from %u channel%s at "
        "%u Hz into %u channel%s at %u Hz", l->out_channels,
        gst_rnn_plural (l->out_channels), l->out_rate, nl->out_channels,
        gst_rnn_plural (nl->out_channels), nl->out_rate);
    return FALSE;
  }
  return TRUE;
}

/* NULL if the source caps @out_rate and @out_channels are what @l turns its
 * sink caps into, else why not (free it). */
gchar *
gst_rnn_layout_check_output (const GstRnnLayout *l, gint out_rate,
    gint out_channels)
{
  if ((guint) out_rate == l->out_rate
      && (guint) out_channels == l->out_channels)
    return NULL;
  return g_strdup_printf ("Model turns %u channel%s at %u Hz into %u "
      "channel%s at %u Hz, not %d at %d Hz", l->in_channels,
      gst_rnn_plural (l->in_channels), l->in_rate, l->out_channels,
      gst_rnn_plural (l->out_channels), l->out_rate, out_channels, out_rate);
}

/* Our own latency: a step's output carries the time of its first input
 * frame and can only be computed once its last frame has arrived, that is
 * F_in·W − 1 frames later (W = window for bidirectional models, 1
 * otherwise).  Upstream's latency already covers the arrival of a frame, so
 *   own = ⌈(F_in·W − 1) · 1 s / rate⌉
 * rounded up so that it is never under-reported. */
GstClockTime
gst_rnn_layout_latency (const GstRnnLayout *l)
{
  guint64 frames;

  if (l->in_rate == 0)
    return 0;
  frames = (guint64) l->f_in * (l->bidirectional ? l->window : 1) - 1;
  return gst_util_uint64_scale_int_ceil (frames, GST_SECOND, l->in_rate);
}

/* Output frames of @steps whole steps and a partial step of @rest input
 * frames: ⌈rest·F_out/F_in⌉ frames of a partial tail. */
guint64
gst_rnn_layout_output_frames (const GstRnnLayout *l, guint64 steps,
    guint64 rest)
{
  return steps * l->f_out + (rest * l->f_out + l->f_in - 1) / l->f_in;
}

/* The rate and channels of fixed raw audio caps; FALSE unless both are
 * there and positive. */
gboolean
gst_rnn_layout_parse_caps (const GstCaps *caps, gint *rate, gint *channels)
{
  const GstStructure *s;

  if (!caps || gst_caps_get_size (caps) < 1)
    return FALSE;
  s = gst_caps_get_structure (caps, 0);
  return gst_structure_get_int (s, "rate", rate)
      && gst_structure_get_int (s, "channels", channels)
      && *rate > 0 && *channels > 0;
}

/* ---- caps ---------------------------------------------------------------- */

static guint64
gcd64 (guint64 a, guint64 b)
{
  while (b != 0) {
    guint64 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Maps every integer v held by @in (an int, an int range or a list of them)
 * with v % @den == 0 to v / @den · @num.  FALSE if nothing maps into
 * [1, G_MAXINT]; otherwise @out is set. */
static gboolean
map_int_value (const GValue *in, guint64 num, guint64 den, GValue *out)
{
  if (G_VALUE_HOLDS_INT (in)) {
    gint v = g_value_get_int (in);
    guint64 r;

    if (v <= 0 || (guint64) v % den != 0)
      return FALSE;
    r = (guint64) v / den * num;
    if (r == 0 || r > G_MAXINT)
      return FALSE;
    g_value_init (out, G_TYPE_INT);
    g_value_set_int (out, (gint) r);
    return TRUE;
  }

  if (GST_VALUE_HOLDS_INT_RANGE (in)) {
    guint64 lo = MAX (gst_value_get_int_range_min (in), 1);
    guint64 hi = MAX (gst_value_get_int_range_max (in), 0);
    guint64 step = MAX (gst_value_get_int_range_step (in), 1);
    guint64 m = step / gcd64 (step, den) * den; /* both ≤ G_MAXINT */
    guint64 first = (lo + m - 1) / m * m, last = hi / m * m;
    guint64 ostep, olo, ohi;

    if (first > last)
      return FALSE;
    ostep = m / den * num;
    olo = first / den * num;
    ohi = last / den * num;
    if (olo > G_MAXINT)
      return FALSE;
    if (ohi > G_MAXINT)
      ohi = G_MAXINT / ostep * ostep;
    if (olo == ohi) {
      g_value_init (out, G_TYPE_INT);
      g_value_set_int (out, (gint) olo);
    } else {
      g_value_init (out, GST_TYPE_INT_RANGE);
      gst_value_set_int_range_step (out, (gint) olo, (gint) ohi, (gint) ostep);
    }
    return TRUE;
  }

  if (GST_VALUE_HOLDS_LIST (in)) {
    guint n = gst_value_list_get_size (in);

    g_value_init (out, GST_TYPE_LIST);
    for (guint i = 0; i < n; i++) {
      GValue o = G_VALUE_INIT;

      if (map_int_value (gst_value_list_get_value (in, i), num, den, &o))
        gst_value_list_append_and_take_value (out, &o);
    }
    n = gst_value_list_get_size (out);
    if (n == 0) {
      g_value_unset (out);
      return FALSE;
    }
    if (n == 1) {
      GValue o = G_VALUE_INIT;

      g_value_init (&o, G_TYPE_INT);
      g_value_copy (gst_value_list_get_value (out, 0), &o);
      g_value_unset (out);
      *out = o;
    }
    return TRUE;
  }

  return FALSE;
}

/* @out = @give if @in can be @want. */
static gboolean
map_int_const (const GValue *in, gint want, gint give, GValue *out)
{
  GValue w = G_VALUE_INIT;
  gboolean ok;

  g_value_init (&w, G_TYPE_INT);
  g_value_set_int (&w, want);
  ok = gst_value_can_intersect (in, &w);
  g_value_unset (&w);
  if (ok) {
    g_value_init (out, G_TYPE_INT);
    g_value_set_int (out, give);
  }
  return ok;
}

/* @in ∩ {@want} into @out. */
static gboolean
restrict_int (const GValue *in, gint want, GValue *out)
{
  GValue w = G_VALUE_INIT;
  gboolean ok;

  g_value_init (&w, G_TYPE_INT);
  g_value_set_int (&w, want);
  ok = gst_value_intersect (out, in, &w);
  g_value_unset (&w);
  return ok;
}

/* Sink caps map to source caps by the model: channels C → C·O/F_out
 * (independent) or I/F_in → O/F_out (vector), rate R → R·F_out/F_in, and
 * only the model's sample_rate if it names one.  @caps are the caps on the
 * @direction pad (not ANY); structures the model cannot take produce
 * nothing, so upstream negotiation can convert.
 *
 * @any_count (sink caps of a vector model of more than two channels, asked
 * by a converter linked upstream): each structure is followed by one with
 * any channel count at the same rate.  audioconvert then hands a stream of
 * another channel count on as it is (it cannot remix it into the model's
 * unpositioned channels, and must not: they are not speaker positions),
 * and the CAPS event refuses it with a message saying what to do; without
 * it negotiation fails upstream with no word of why. */
GstCaps *
gst_rnn_layout_transform_caps (const RnnModel *model,
    GstRnnFilterChannelMode mode, GstPadDirection direction,
    const GstCaps *caps, gboolean any_count)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const GstCaps *in = caps;
  GstCaps *result;
  guint f_in, f_out, c_in, c_out, g;
  gboolean per_channel, same_channels;

  f_in = MAX (cfg->frame_size, 1);
  f_out = MAX (cfg->output_frame_size, 1);
  c_in = cfg->input_size / f_in;
  c_out = rnn_model_get_output_size (model) / f_out;
  g = (guint) gcd64 (f_in, f_out);
  /* the channel count scales (auto with a single-channel model, or
   * independent); otherwise it is fixed by the model.  An independent mode
   * that the model cannot do maps like vector and fails in the CAPS event
   * with an explanation. */
  per_channel = c_in == 1 && mode != GST_RNN_FILTER_CHANNEL_MODE_VECTOR;
  /* channel k out is channel k in: keep the positions */
  same_channels = per_channel ? c_out == 1 : c_in == c_out;

  result = gst_caps_new_empty ();
  for (guint i = 0; i < gst_caps_get_size (in); i++) {
    const GstStructure *st = gst_caps_get_structure (in, i);
    const GValue *ch = gst_structure_get_value (st, "channels");
    const GValue *rate = gst_structure_get_value (st, "rate");
    GValue any = G_VALUE_INIT, och = G_VALUE_INIT, orate = G_VALUE_INIT;
    GValue tmp = G_VALUE_INIT;
    GstStructure *o, *any_st = NULL;
    gboolean ok;

    if (gst_caps_features_is_any (gst_caps_get_features (in, i)))
      continue;
    g_value_init (&any, GST_TYPE_INT_RANGE);
    gst_value_set_int_range (&any, 1, G_MAXINT);
    if (!ch)
      ch = &any;
    if (!rate)
      rate = &any;

    if (direction == GST_PAD_SINK) {
      ok = per_channel ? map_int_value (ch, c_out, 1, &och)
          : map_int_const (ch, c_in, c_out, &och);
      if (ok && cfg->sample_rate != 0) {
        ok = restrict_int (rate, cfg->sample_rate, &tmp);
        if (ok) {
          ok = map_int_value (&tmp, f_out / g, f_in / g, &orate);
          g_value_unset (&tmp);
        }
      } else if (ok) {
        ok = map_int_value (rate, f_out / g, f_in / g, &orate);
      }
    } else {
      ok = per_channel ? map_int_value (ch, 1, c_out, &och)
          : map_int_const (ch, c_out, c_in, &och);
      if (ok && cfg->sample_rate != 0) {
        ok = map_int_value (rate, f_in / g, f_out / g, &tmp);
        if (ok) {
          ok = restrict_int (&tmp, cfg->sample_rate, &orate);
          g_value_unset (&tmp);
        }
      } else if (ok) {
        ok = map_int_value (rate, f_in / g, f_out / g, &orate);
      }
    }
    g_value_unset (&any);

    if (ok) {
      o = gst_structure_copy (st);
      if (!same_channels)
        gst_structure_remove_field (o, "channel-mask");
      /* a vector model of more than two channels takes them unpositioned:
       * audioconvert then cannot remix a positioned stream into them */
      if (direction == GST_PAD_SRC && !per_channel && c_in > 2) {
        if (any_count) {
          any_st = gst_structure_copy (o);
          gst_structure_remove_field (any_st, "channel-mask");
          gst_structure_set (any_st, "channels", GST_TYPE_INT_RANGE, 1,
              G_MAXINT, NULL);
          gst_structure_set_value (any_st, "rate", &orate);
        }
        gst_structure_set (o, "channel-mask", GST_TYPE_BITMASK, (guint64) 0,
            NULL);
      }
      gst_structure_take_value (o, "channels", &och);
      gst_structure_take_value (o, "rate", &orate);
      if (any_st) {
        /* appended, not merged: the model's own structure is a subset */
        gst_caps_append_structure (result, o);
        gst_caps_append_structure (result, any_st);
      } else {
        result = gst_caps_merge_structure (result, o);
      }
    } else {
      if (G_IS_VALUE (&och))
        g_value_unset (&och);
      if (G_IS_VALUE (&orate))
        g_value_unset (&orate);
    }
  }
  return result;
}

/* "S16LE, 2 channels at 44100 Hz" for raw audio caps, else the caps. */
static gchar *
describe_stream (const GstCaps *caps)
{
  const GstStructure *st = gst_caps_get_size (caps) > 0
      ? gst_caps_get_structure (caps, 0) : NULL;
  const gchar *format = st ? gst_structure_get_string (st, "format") : NULL;
  const gchar *layout = st ? gst_structure_get_string (st, "layout") : NULL;
  gint rate, channels;

  if (!st || !gst_structure_has_name (st, "audio/x-raw") || !format
      || !gst_structure_get_int (st, "rate", &rate)
      || !gst_structure_get_int (st, "channels", &channels))
    return gst_caps_to_string (caps);
  return g_strdup_printf ("%s%s, %d channel%s at %d Hz", format,
      g_strcmp0 (layout, "non-interleaved") == 0 ? " non-interleaved" : "",
      channels, gst_rnn_plural (channels), rate);
}

/* The text of a refusal for @model: @why, then what the model needs, what
 * arrived (@arrived, of @channels channels; 0 if not known) and how to
 * convert it (free it). */
static gchar *
refusal_text (const RnnModel *model, GstRnnFilterChannelMode mode,
    const gchar *arrived, gint channels, const gchar *why)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const guint c_in = cfg->input_size / MAX (cfg->frame_size, 1);
  const gboolean per_channel = c_in == 1
      && mode != GST_RNN_FILTER_CHANNEL_MODE_VECTOR;
  GString *s = g_string_new (why);

  g_string_append (s, ". The model needs F32LE interleaved audio, ");
  if (per_channel)
    g_string_append (s, "1 channel (or several, one state each)");
  else
    g_string_append_printf (s, "%u channel%s%s", c_in, gst_rnn_plural (c_in),
        c_in > 2 ? " (taken in order, never remixed)" : "");
  if (cfg->sample_rate != 0)
    g_string_append_printf (s, " at %u Hz", cfg->sample_rate);
  else
    g_string_append (s, " at any rate");
  g_string_append_printf (s, "; the stream is %s. ", arrived);
  if (!per_channel && c_in > 2 && channels > 0 && (guint) channels != c_in)
    g_string_append_printf (s, "The model wants %u independent channels: "
        "remixing the stream would feed it wrong data, so audioconvert will "
        "not change the channel count; build the %u-channel stream with "
        "audiointerleave or rawaudioparse.", c_in, c_in);
  else
    g_string_append (s, "Put audioconvert ! audioresample in front of "
        "rnnfilter to convert.");
  return g_string_free (s, FALSE);
}

/* The text of the refusal of @caps for @model: @why, then what the model
 * needs, what arrived and how to convert it (free it). */
gchar *
gst_rnn_layout_describe_refusal (const RnnModel *model,
    GstRnnFilterChannelMode mode, const GstCaps *caps, const gchar *why)
{
  const GstStructure *st = gst_caps_get_size (caps) > 0
      ? gst_caps_get_structure (caps, 0) : NULL;
  gchar *arrived = describe_stream (caps), *text;
  gint channels = 0;

  if (st)
    gst_structure_get_int (st, "channels", &channels);
  text = refusal_text (model, mode, arrived, channels, why);
  g_free (arrived);
  return text;
}

/* NULL if @caps are F32LE interleaved raw audio, else why not (free it). */
gchar *
gst_rnn_layout_check_format (const GstCaps *caps)
{
  const GstStructure *st;
  const gchar *format, *layout;

  if (gst_caps_get_size (caps) < 1)
    return g_strdup ("empty caps");
  st = gst_caps_get_structure (caps, 0);
  format = gst_structure_get_string (st, "format");
  layout = gst_structure_get_string (st, "layout");
  if (!gst_structure_has_name (st, "audio/x-raw"))
    return g_strdup_printf ("rnnfilter takes raw audio, not %s",
        gst_structure_get_name (st));
  if (g_strcmp0 (format, "F32LE") != 0)
    return g_strdup_printf ("rnnfilter takes F32LE samples, not %s",
        format ? format : "an unknown format");
  if (g_strcmp0 (layout, "interleaved") != 0)
    return g_strdup_printf ("rnnfilter takes interleaved samples, not %s",
        layout ? layout : "an unknown layout");
  return NULL;
}

/* FALSE, with *why (free it), if @model cannot run on the fixed caps
 * @caps: not F32LE interleaved raw audio, or channels or rate it does not
 * take.  Caps without a rate or channels pass (set_caps refuses them). */
gboolean
gst_rnn_layout_check_caps (const RnnModel *model, GstRnnFilterChannelMode mode,
    guint window, const GstCaps *caps, gchar **why)
{
  GstRnnLayout l;
  gint rate, channels;

  if ((*why = gst_rnn_layout_check_format (caps)))
    return FALSE;
  return !gst_rnn_layout_parse_caps (caps, &rate, &channels)
      || gst_rnn_layout_resolve (&l, model, mode, window, rate, channels, why);
}

/* Fixes @caps (taken) to one structure.  More than two channels need a
 * channel-mask for GstAudioInfo; unless transform_caps kept upstream's, the
 * channels are not positioned. */
GstCaps *
gst_rnn_layout_fixate_caps (GstCaps *caps)
{
  GstStructure *s;
  gint channels;

  caps = gst_caps_truncate (caps);
  caps = gst_caps_fixate (caps);
  caps = gst_caps_make_writable (caps);
  s = gst_caps_get_structure (caps, 0);
  if (gst_structure_get_int (s, "channels", &channels) && channels > 2
      && !gst_structure_has_field (s, "channel-mask"))
    gst_structure_set (s, "channel-mask", GST_TYPE_BITMASK, (guint64) 0, NULL);
  return caps;
}

/* ---- frames and model tensors -------------------------------------------- */

/* TRUE when none of the @n floats at @in is an infinity or a NaN (the
 * exponent bits all set): a branch-free test the compiler vectorises. */
static gboolean
all_finite (const guint8 *in, gsize n)
{
  guint32 bad = 0;
  for (gsize i = 0; i < n; i++) {
    guint32 u;
    memcpy (&u, in + i * sizeof (float), sizeof u);
    bad |= (u & 0x7f800000u) == 0x7f800000u;
  }
  return !bad;
}

/* A non-finite value of channel @c becomes 0.0 and is counted in @bad;
 * the first of a run of them (per channel) is what gets reported. */
static inline void
scrub (float *v, GstRnnNonFinite *bad, guint c)
{
  if (G_UNLIKELY (!isfinite (*v))) {
    *v = 0.0f;
    bad->total++;
    if (!bad->in_run[c]) {
      bad->in_run[c] = TRUE;
      if (bad->new_runs++ == 0)
        bad->first_channel = c;
    }
  } else if (G_UNLIKELY (bad->in_run[c])) {
    bad->in_run[c] = FALSE;
  }
}

/* x[t][b][f·C_in + c] from @frames interleaved input frames (the rest of the
 * T·F_in frames are zeros); non-finite values become 0.0 (see the element
 * documentation) and are counted in @bad per channel run. */
void
gst_rnn_layout_fill_input (const GstRnnLayout *l, float *x, const guint8 *in,
    guint64 frames, guint T, GstRnnNonFinite *bad)
{
  const guint C = l->in_channels;

  /* x in the input's own order (every mixed layout, and independent
   * channels of one input each): a copy when every value is finite and
   * no channel is inside a non-finite run (whose end the loop below
   * records); element by element, that loop cost some 50 instructions
   * per sample, a seventh of an LSTM H=8 step */
  if (!l->independent || l->f_in == 1) {
    gboolean in_run = FALSE;
    for (guint c = 0; c < C; c++)
      in_run |= bad->in_run[c];
    const gsize total = (gsize) T * l->f_in * C;
    const gsize n = MIN ((gsize) frames * C, total);
    if (!in_run && all_finite (in, n)) {
      memcpy (x, in, n * sizeof (float));
      memset (x + n, 0, (total - n) * sizeof (float));
      return;
    }
  }

  for (guint t = 0; t < T; t++) {
    for (guint f = 0; f < l->f_in; f++) {
      const guint64 k = (guint64) t * l->f_in + f;
      const guint8 *frame = in + k * C * sizeof (float);

      for (guint c = 0; c < C; c++) {
        float v = 0.0f;
        gsize xi;

        if (k < frames) {
          memcpy (&v, frame + c * sizeof (float), sizeof (float));
          scrub (&v, bad, c);
        }
        if (l->independent)     /* C_in = 1, I = F_in, b = c */
          xi = ((gsize) t * l->batch + c) * l->n_in + f;
        else                    /* B = 1, I = F_in·C */
          xi = (gsize) t * l->n_in + (gsize) f * C + c;
        x[xi] = v;
      }
    }
  }
}

/* Replaces every NaN or infinity of the model's outputs y[t][b][O] (T
 * steps) by 0.0, counted in @bad per output channel run, as the input's
 * (see the element documentation). */
void
gst_rnn_layout_scrub_output (const GstRnnLayout *l, float *y, guint T,
    GstRnnNonFinite *bad)
{
  const gsize n = (gsize) T * l->batch * l->n_out;
  gboolean in_run = FALSE;

  for (guint c = 0; c < bad->n_channels; c++)
    in_run |= bad->in_run[c];
  if (!in_run && all_finite ((const guint8 *) y, n))
    return;
  for (gsize i = 0; i < n; i++) {
    const gsize o = i % l->n_out, b = i / l->n_out % l->batch;
    const guint c = MIN ((guint) (b * l->c_out + o % l->c_out),
        bad->n_channels - 1);

    scrub (&y[i], bad, c);
  }
}

/* @out_frames interleaved output frames from y[t][b][f·C_out + k]. */
void
gst_rnn_layout_write_output (const GstRnnLayout *l, float *out,
    const float *y, guint64 out_frames)
{
  /* one stream, or independent channels of one output frame each: y
   * is already in the output's order */
  if (!l->independent || l->f_out == 1) {
    memcpy (out, y, out_frames * l->out_channels * sizeof (float));
    return;
  }
  for (guint64 k = 0; k < out_frames; k++) {
    const guint64 t = k / l->f_out, f = k % l->f_out;
    float *o = out + k * l->out_channels;

    for (guint b = 0; b < l->batch; b++)
      memcpy (o + (gsize) b * l->c_out,
          y + ((gsize) t * l->batch + b) * l->n_out + f * l->c_out,
          l->c_out * sizeof (float));
  }
}

/* The rnnfilter-output message of core stream @b at step @t of
 * y[t][b][O] (see the message-interval property): `values` a GValueArray
 * of doubles, as the level element posts its rms and peak, so that
 * PyGObject reads it without the gst-python overrides; for softmax heads
 * `class`, `confidence` (double) and `label` from the model's `labels`
 * metadata (comma-separated, one per output) when it has them. */
GstStructure *
gst_rnn_layout_output_structure (const GstRnnLayout *l, const RnnModel *model,
    const float *y, guint t, guint b, GstClockTime ts)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const float *v = y + ((gsize) t * l->batch + b) * l->n_out;
  GValue values = G_VALUE_INIT;
  GValueArray *arr;
  GstStructure *s;
  guint best = 0;

  G_GNUC_BEGIN_IGNORE_DEPRECATIONS;
  arr = g_value_array_new (l->n_out);
  for (guint o = 0; o < l->n_out; o++) {
    GValue dv = G_VALUE_INIT;

    g_value_init (&dv, G_TYPE_DOUBLE);
    g_value_set_double (&dv, v[o]);
    g_value_array_append (arr, &dv);
    g_value_unset (&dv);
    if (v[o] > v[best])
      best = o;
  }
  s = gst_structure_new ("rnnfilter-output",
      "timestamp", G_TYPE_UINT64, (guint64) ts, NULL);
  g_value_init (&values, g_value_array_get_type ());
  G_GNUC_END_IGNORE_DEPRECATIONS;
  g_value_take_boxed (&values, arr);
  gst_structure_take_value (s, "values", &values);
  if (cfg->has_head && cfg->head_activation == RNN_HEAD_ACT_SOFTMAX) {
    const gchar *labels = rnn_model_get_meta (model, "labels");

    gst_structure_set (s, "class", G_TYPE_INT, (gint) best,
        "confidence", G_TYPE_DOUBLE, (gdouble) v[best], NULL);
    if (labels) {
      gchar **names = g_strsplit (labels, ",", -1);

      if (g_strv_length (names) == l->n_out)
        gst_structure_set (s, "label", G_TYPE_STRING,
            g_strstrip (names[best]), NULL);
      g_strfreev (names);
    }
  }
  if (l->independent)
    gst_structure_set (s, "channel", G_TYPE_INT, (gint) b, NULL);
  return s;
}

/* ---- the element's enum types -------------------------------------------- */

GType
gst_rnn_filter_channel_mode_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_FILTER_CHANNEL_MODE_AUTO,
        "Vector if the channel counts match, else independent if the model "
          "takes one channel", "auto"},
    {GST_RNN_FILTER_CHANNEL_MODE_VECTOR,
        "All channels of a frame form one input vector", "vector"},
    {GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT,
        "A single-channel model runs on every channel with its own state",
        "independent"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnFilterChannelMode", values);
}

GType
gst_rnn_filter_weight_precision_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT32,
        "The model's float32 weights", "float32"},
    {GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT16,
        "Recurrent weights rounded to float16 (half the bytes, less "
          "exact; faster or slower depending on the CPU)", "float16"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnFilterWeightPrecision", values);
}

/* What an offer upstream made in a caps query (@filter) lacks for @model,
 * as gst_rnn_layout_describe_refusal() words it, or NULL if it is not raw
 * audio or nothing is wrong with its rate and channels.  Format and layout
 * are left out of the comparison: the element that asked converts those. */
gchar *
gst_rnn_layout_describe_offer (const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, const GstCaps *filter)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const guint c_in = cfg->input_size / MAX (cfg->frame_size, 1);
  GstCaps *offer;
  GstStructure *st;
  gchar *why = NULL, *text = NULL;
  gboolean any_count;
  gint channels, rate;

  if (!filter || gst_caps_is_empty (filter) || gst_caps_is_any (filter)
      || !gst_structure_has_name (gst_caps_get_structure (filter, 0),
          "audio/x-raw"))
    return NULL;
  offer = gst_caps_copy_nth (filter, 0);
  st = gst_caps_get_structure (offer, 0);
  gst_structure_set (st, "format", G_TYPE_STRING, "F32LE", "layout",
      G_TYPE_STRING, "interleaved", NULL);
  /* A converter (audioconvert) offers any channel count: judge the rest
   * with the model's count, and say so rather than name one count. */
  any_count = !gst_structure_get_int (st, "channels", &channels);
  if (any_count)
    gst_structure_set (st, "channels", G_TYPE_INT, (gint) MAX (c_in, 1), NULL);
  offer = gst_caps_fixate (offer);
  if (!gst_rnn_layout_check_caps (model, mode, window, offer, &why) && why) {
    if (any_count && gst_structure_get_int (gst_caps_get_structure (offer,
                0), "rate", &rate)) {
      gchar *arrived = g_strdup_printf ("offered at %d Hz, in any number of "
          "channels", rate);

      text = refusal_text (model, mode, arrived, 0, why);
      g_free (arrived);
    } else {
      text = gst_rnn_layout_describe_refusal (model, mode, offer, why);
    }
  }
  g_free (why);
  gst_caps_unref (offer);
  return text;
}
