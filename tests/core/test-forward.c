/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Forward pass: parity with PyTorch on the committed fixtures, streaming
 * invariants (chunking, batching), naive vs fast path, no allocation in the
 * steady state. */
#include "test-common.h"
#include "rnn-private.h"
#include "rnn-train.h"
#include "rnn-kernels.h"

#include <stdlib.h>

/* ---- allocation counter (tests/common/alloc-hook.h) ---------------------- */

#include "alloc-hook.h"
#include "tsan-glib.h"

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
  char *name;
  RnnModel *model;
  guint8 *expected_data;
  RnnSafetensors *expected;
} Fixture;

static GPtrArray *fixtures;     /* Fixture* */
/* the layers around the recurrent stack (tests/core/gen-layer-fixtures.py) */
static GPtrArray *layer_fixtures;
static const guint seq_lengths[] = { 1, 17, 1000 };

static void
fixture_free (gpointer p)
{
  Fixture *f = p;
  g_free (f->name);
  rnn_model_unref (f->model);
  rnn_safetensors_free (f->expected);
  g_free (f->expected_data);
  g_free (f);
}

static GPtrArray *
load_fixture_dir (const char *dir)
{
  GPtrArray *arr = g_ptr_array_new_with_free_func (fixture_free);
  char **names = fixture_names (dir);
  for (char **n = names; *n; n++) {
    Fixture *f = g_new0 (Fixture, 1);
    f->name = g_strdup (*n);
    f->model = fixture_model (dir, *n);
    f->expected = fixture_expected (dir, *n, &f->expected_data);
    g_ptr_array_add (arr, f);
  }
  g_strfreev (names);
  return arr;
}

static void
load_fixtures (void)
{
  fixtures = load_fixture_dir ("forward");
  layer_fixtures = load_fixture_dir ("layers");
}

/* PyTorch's output for sequence length @T, as [T][O] with rows at the steps
 * *steps (all steps for T < 1000). */
static float *
expected_output (const Fixture *f, guint T, GArray **steps)
{
  GError *error = NULL;
  char *key = g_strdup_printf ("y_T%u", T);
  const RnnStTensor *t = rnn_safetensors_find (f->expected, key);
  g_assert_nonnull (t);
  float *y = g_new (float, t->numel);
  g_assert_true (rnn_safetensors_read_f32 (t, y, &error));
  g_assert_no_error (error);
  *steps = g_array_new (FALSE, FALSE, sizeof (guint));
  char *skey = g_strdup_printf ("steps_T%u", T);
  const char *list = rnn_safetensors_get_meta (f->expected, skey);
  if (list) {
    char **parts = g_strsplit (list, ",", -1);
    for (char **p = parts; *p; p++) {
      guint s = (guint) g_ascii_strtoull (*p, NULL, 10);
      g_array_append_val (*steps, s);
    }
    g_strfreev (parts);
  } else {
    for (guint s = 0; s < T; s++)
      g_array_append_val (*steps, s);
  }
  g_assert_cmpuint ((*steps)->len * rnn_model_get_output_size (f->model), ==, t->numel);
  g_free (skey);
  g_free (key);
  return y;
}

/* Runs sequence T of the fixtures through @model from zero state, one
 * sample per call (rnn_forward ()'s one-sample paths). */
static float *
run_sample_by_sample (const RnnModel *model, guint T)
{
  const RnnConfig *c = rnn_model_get_config (model);
  const guint I = c->input_size, O = rnn_model_get_output_size (model);
  float *x = g_new (float, (gsize) T * I);
  float *y = g_new (float, (gsize) T * O);
  fixture_fill (x, T, 1, 0, I, T);
  RnnState *state = rnn_state_new (model, 1);
  RnnForward *fw = rnn_forward_new ();
  for (guint t = 0; t < T; t++)
    rnn_forward (fw, model, state, x + (gsize) t * I, 1, 1, y + (gsize) t * O);
  rnn_forward_free (fw);
  rnn_state_free (state);
  g_free (x);
  return y;
}

/* Runs sequence T of the fixtures through @model from zero state. */
static float *
run_sequence (const RnnModel *model, guint T, gboolean naive)
{
  const RnnConfig *c = rnn_model_get_config (model);
  const guint O = rnn_model_get_output_size (model);
  float *x = g_new (float, (gsize) T * c->input_size);
  float *y = g_new (float, (gsize) T * O);
  fixture_fill (x, T, 1, 0, c->input_size, T);
  RnnState *state = c->bidirectional ? NULL : rnn_state_new (model, 1);
  if (naive) {
    rnn_forward_naive (model, state, x, T, 1, y);
  } else {
    RnnForward *fw = rnn_forward_new ();
    rnn_forward (fw, model, state, x, T, 1, y);
    rnn_forward_free (fw);
  }
  rnn_state_free (state);
  g_free (x);
  return y;
}

static void
check_parity (gboolean naive)
{
  double worst[4][3] = { { 0 } };   /* cell x sequence length */
  for (guint n = 0; n < fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    const guint O = rnn_model_get_output_size (f->model);
    for (guint s = 0; s < G_N_ELEMENTS (seq_lengths); s++) {
      const guint T = seq_lengths[s];
      GArray *steps;
      float *ref = expected_output (f, T, &steps);
      float *y = run_sequence (f->model, T, naive);
      double err = 0.0;
      for (guint k = 0; k < steps->len; k++) {
        guint t = g_array_index (steps, guint, k);
        err = MAX (err, max_abs_diff (y + (gsize) t * O, ref + (gsize) k * O, O));
      }
      if (err > 1e-6)
        g_test_message ("%s T=%u: max abs error %.3g", f->name, T, err);
      g_assert_cmpfloat (err, <=, 1e-6);
      worst[c->cell][s] = MAX (worst[c->cell][s], err);
      g_array_unref (steps);
      g_free (ref);
      g_free (y);
    }
  }
  /* the parity table: the largest error per cell and sequence length */
  g_test_message ("%s path, %u models: max abs error vs PyTorch", naive ? "naive" : "fast",
      fixtures->len);
  for (guint c = 0; c < 4; c++)
    g_test_message ("  %-8s T=1 %.2e  T=17 %.2e  T=1000 %.2e",
        rnn_cell_to_string ((RnnCell) c), worst[c][0], worst[c][1], worst[c][2]);
}

static void
test_parity_fast (void)
{
  check_parity (FALSE);
}

static void
test_parity_naive (void)
{
  check_parity (TRUE);
}

/* The naive loops and the fast path agree on every fixture. */
static void
test_naive_vs_fast (void)
{
  for (guint n = 0; n < fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n);
    const guint T = 1000, O = rnn_model_get_output_size (f->model);
    float *a = run_sequence (f->model, T, FALSE);
    float *b = run_sequence (f->model, T, TRUE);
    g_assert_cmpfloat (max_abs_diff (a, b, (gsize) T * O), <=, 1e-6);
    g_free (a);
    g_free (b);
  }
}

/* The same T=1000 sequence in chunks of 1, 7, 64 and all at once, with
 * float32 and with float16 recurrent weights (chunks of one or two steps
 * take the direct one-stream path of rnn_forward (), longer ones the
 * general path). */
static void
test_chunking (void)
{
  const guint T = 1000, chunks[] = { 1, 7, 64, T };
  guint checked = 0;
  for (guint n = 0; n < 2 * fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n % fixtures->len);
    const RnnConfig *c = rnn_model_get_config (f->model);
    if (c->bidirectional)
      continue;
    const gboolean f16 = n >= fixtures->len;
    g_autoptr (RnnModel) model = rnn_model_copy (f->model);
    if (f16)
      g_assert_true (rnn_model_set_weight_precision (model, RNN_WEIGHTS_F16, NULL));
    const guint I = c->input_size, O = rnn_model_get_output_size (f->model);
    float *x = g_new (float, (gsize) T * I);
    fixture_fill (x, T, 1, 0, I, T);
    float *ref = NULL;
    for (guint k = 0; k < G_N_ELEMENTS (chunks); k++) {
      float *y = g_new (float, (gsize) T * O);
      g_autoptr (RnnState) state = rnn_state_new (model, 1);
      g_autoptr (RnnForward) fw = rnn_forward_new ();
      for (guint t0 = 0; t0 < T; t0 += chunks[k]) {
        guint len = MIN (chunks[k], T - t0);
        rnn_forward (fw, model, state, x + (gsize) t0 * I, len, 1, y + (gsize) t0 * O);
      }
      if (!ref) {
        ref = y;
      } else {
        if (memcmp (ref, y, sizeof (float) * T * O) != 0)
          g_test_message ("%s%s: chunks of %u differ from chunks of %u", f->name,
              f16 ? " (float16 weights)" : "", chunks[k], chunks[0]);
        g_assert_cmpmem (ref, sizeof (float) * T * O, y, sizeof (float) * T * O);
        g_free (y);
      }
    }
    checked++;
    g_free (ref);
    g_free (x);
  }
  g_assert_cmpuint (checked, >, 100);
}

/* ---- the layers around the recurrent stack ------------------------------ */

/* Pre/post layers, initial state and skip (docs/design.md §2) against
 * PyTorch, on the fast path (a call per sequence, and for unidirectional
 * models a call per sample: the one-sample paths) and the naive one, with
 * the parity tests' tolerance. */
static void
test_layers_parity (void)
{
  double worst[3] = { 0 };
  for (guint n = 0; n < layer_fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (layer_fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    const guint O = rnn_model_get_output_size (f->model);
    g_assert_cmpuint (O, ==, rnn_model_get_output_size (f->model));
    for (guint s = 0; s < G_N_ELEMENTS (seq_lengths); s++) {
      const guint T = seq_lengths[s];
      GArray *steps;
      float *ref = expected_output (f, T, &steps);
      float *ys[3] = {
        run_sequence (f->model, T, FALSE), run_sequence (f->model, T, TRUE),
        c->bidirectional ? NULL : run_sample_by_sample (f->model, T),
      };
      for (guint p = 0; p < 3; p++) {
        if (!ys[p])
          continue;
        double err = 0.0;
        for (guint k = 0; k < steps->len; k++) {
          const guint t = g_array_index (steps, guint, k);
          err = MAX (err, max_abs_diff (ys[p] + (gsize) t * O,
                  ref + (gsize) k * O, O));
        }
        if (err > 1e-6)
          g_test_message ("%s T=%u %s: max abs error %.3g", f->name, T,
              p == 0 ? "fast" : p == 1 ? "naive" : "sample by sample", err);
        g_assert_cmpfloat (err, <=, 1e-6);
        worst[p] = MAX (worst[p], err);
        g_free (ys[p]);
      }
      g_array_unref (steps);
      g_free (ref);
    }
  }
  g_test_message ("%u models with pre/post layers, h0, skip: max abs error vs "
      "PyTorch: fast %.2e, naive %.2e, sample by sample %.2e",
      layer_fixtures->len, worst[0], worst[1], worst[2]);
}

/* Chunks of 1, 7 and T steps give the same bits; so does a batch of three
 * streams (each reset to the initial state) against one stream alone, and
 * two threads against one; and a reset returns to the initial state. */
static void
test_layers_streaming (void)
{
  const guint T = 1000, chunks[] = { 1, 7, T };
  guint checked = 0;
  for (guint n = 0; n < layer_fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (layer_fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    if (c->bidirectional)
      continue;
    const guint I = c->input_size, O = rnn_model_get_output_size (f->model);
    float *x = g_new (float, (gsize) T * I);
    fixture_fill (x, T, 1, 0, I, T);
    float *ref = NULL;
    for (guint k = 0; k < G_N_ELEMENTS (chunks); k++) {
      float *y = g_new (float, (gsize) T * O);
      g_autoptr (RnnState) state = rnn_state_new (f->model, 1);
      g_autoptr (RnnForward) fw = rnn_forward_new ();
      for (guint t0 = 0; t0 < T; t0 += chunks[k]) {
        const guint len = MIN (chunks[k], T - t0);
        rnn_forward (fw, f->model, state, x + (gsize) t0 * I, len, 1,
            y + (gsize) t0 * O);
      }
      /* after a reset, the same again */
      rnn_state_reset (state);
      float *again = g_new (float, (gsize) T * O);
      rnn_forward (fw, f->model, state, x, T, 1, again);
      if (!ref) {
        ref = y;
      } else {
        if (memcmp (ref, y, sizeof (float) * T * O) != 0)
          g_test_message ("%s: chunks of %u differ from chunks of %u",
              f->name, chunks[k], chunks[0]);
        g_assert_cmpmem (ref, sizeof (float) * T * O, y, sizeof (float) * T * O);
        g_free (y);
      }
      g_assert_cmpmem (ref, sizeof (float) * T * O, again, sizeof (float) * T * O);
      g_free (again);
    }
    /* three streams, stream 1 the same sequence as above: the same bits;
     * reset_stream () puts a stream back to the initial state */
    const guint B = 3;
    float *xb = g_new (float, (gsize) T * B * I);
    float *yb = g_new (float, (gsize) T * B * O);
    for (guint b = 0; b < B; b++)
      fixture_fill (xb, T, B, b, I, b == 1 ? T : 900 + b);
    g_autoptr (RnnState) sb = rnn_state_new (f->model, B);
    g_autoptr (RnnForward) fw = rnn_forward_new ();
    rnn_forward (fw, f->model, sb, xb, 5, B, yb);
    rnn_state_reset_stream (sb, 1);
    rnn_forward (fw, f->model, sb, xb, T, B, yb);
    for (guint t = 0; t < T; t++)
      g_assert_cmpmem (ref + (gsize) t * O, O * sizeof (float),
          yb + ((gsize) t * B + 1) * O, O * sizeof (float));
    g_free (xb);
    g_free (yb);

    /* eight streams split over two threads: the same bits as one thread
     * (the pre/post layers' passes run per share) */
    const guint B8 = 8, T8 = 200;
    float *x8 = g_new (float, (gsize) T8 * B8 * I);
    float *y1 = g_new (float, (gsize) T8 * B8 * O);
    float *y2 = g_new (float, (gsize) T8 * B8 * O);
    for (guint b = 0; b < B8; b++)
      fixture_fill (x8, T8, B8, b, I, 800 + b);
    for (guint th = 1; th <= 2; th++) {
      g_autoptr (RnnForward) fwt = rnn_forward_new ();
      g_assert_true (rnn_forward_set_threads (fwt, th, NULL));
      g_autoptr (RnnState) s8 = rnn_state_new (f->model, B8);
      rnn_forward (fwt, f->model, s8, x8, T8, B8, th == 1 ? y1 : y2);
    }
    g_assert_cmpmem (y1, (gsize) T8 * B8 * O * sizeof (float),
        y2, (gsize) T8 * B8 * O * sizeof (float));
    g_free (x8);
    g_free (y1);
    g_free (y2);
    checked++;
    g_free (ref);
    g_free (x);
  }
  g_assert_cmpuint (checked, >=, 20);
}

/* A model with only an initial state and a skip keeps its direct path (and
 * its one-sample plan); one with pre or post layers takes the general
 * path.  The state starts at h0, c0.  Training takes them with mse; a
 * skip refuses cross-entropy (no logits after it). */
static void
test_layers_paths (void)
{
  for (guint n = 0; n < layer_fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (layer_fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    GError *error = NULL;
    g_assert_true (rnn_loss_check (RNN_LOSS_MSE, f->model, &error));
    g_assert_no_error (error);
    if (c->skip) {
      g_assert_false (rnn_loss_check (RNN_LOSS_CROSS_ENTROPY, f->model, &error));
      g_assert_error (error, RNN_ERROR, RNN_ERROR_INVALID);
      g_clear_error (&error);
    }
    if (c->n_pre || c->n_post)
      g_assert_cmpint (f->model->plan.direct, ==, RNN_DIRECT_NONE);
    if (g_str_has_suffix (f->name, "_skip") && c->cell != RNN_CELL_RNN_RELU
        && c->cell != RNN_CELL_RNN_TANH) {
      g_assert_cmpint (f->model->plan.direct, ==, RNN_DIRECT_SMALL);
      g_assert_nonnull (f->model->plan.step1.fn);
    }
    if (g_str_has_suffix (f->name, "_h0-L2"))
      g_assert_cmpint (f->model->plan.direct, ==, RNN_DIRECT_SMALL2);
    if (!c->has_h0 || c->bidirectional)
      continue;
    g_autoptr (RnnState) st = rnn_state_new (f->model, 2);
    const float *h0 = rnn_model_get_h0 (f->model);
    const float *c0 = rnn_model_get_c0 (f->model);
    const guint H = c->hidden_size;
    for (guint k = 0; k < c->num_layers; k++)
      for (guint b = 0; b < 2; b++) {
        g_assert_cmpmem (rnn_state_h (st, k, 0) + b * H, H * sizeof (float),
            h0 + (gsize) k * H, H * sizeof (float));
        if (c0)
          g_assert_cmpmem (rnn_state_c (st, k, 0) + b * H, H * sizeof (float),
              c0 + (gsize) k * H, H * sizeof (float));
      }
    g_autoptr (RnnState) copy = rnn_state_copy (st);
    memset (rnn_state_h (st, 0, 0), 0, H * sizeof (float));
    rnn_state_reset (copy);
    rnn_state_reset_stream (st, 0);
    g_assert_cmpmem (rnn_state_h (st, 0, 0), 2 * H * sizeof (float),
        rnn_state_h (copy, 0, 0), 2 * H * sizeof (float));
  }
}

/* The kernels by hidden size: H = 8 to 32 have register kernels (h and c
 * held across steps, input projection and head fused), larger sizes the
 * general one; two layers of 8 units for one stream have a kernel of their
 * own, and one stream at a step or two per call of a larger model the
 * direct path (recur_one_io).  The fixtures have H = 1, 8 and 33; this covers
 * the multiples of 8 up to 32 on random models (every cell, 1 or 3
 * inputs, with and without a head, one or two layers): for three streams
 * the fused paths give the general path's bits (its passes, forced by
 * rnn_forward_set_plain ()) and split over two threads; for one stream,
 * one call of T steps, calls of one step and the same stream inside a call
 * of three give the same bits;
 * and the naive loops agree within 2e-6. */
static void
test_kernel_sizes (void)
{
  const guint T = 150, sizes[] = { 8, 16, 24, 32 };
  guint checked = 0;
  for (guint cell = 0; cell < 4; cell++)
    for (guint si = 0; si < G_N_ELEMENTS (sizes); si++)
      for (guint variant = 0; variant < 8; variant++) {
        RnnConfig cfg;
        rnn_config_init (&cfg);
        cfg.cell = (RnnCell) cell;
        cfg.hidden_size = sizes[si];
        cfg.num_layers = variant & 4 ? 2 : 1;
        cfg.input_size = variant & 1 ? 3 : 1;
        cfg.has_head = (variant & 2) != 0;
        cfg.output_size = cfg.has_head ? 2 : 0;
        cfg.head_activation = RNN_HEAD_ACT_NONE;
        g_autoptr (GError) error = NULL;
        g_autoptr (RnnModel) m = rnn_model_new (&cfg, &error);
        g_assert_no_error (error);
        rnn_train_init_params (m, 1000 + checked);
        rnn_model_seal (m);
        const guint I = cfg.input_size, O = rnn_model_get_output_size (m), B = 3;
        float *x = g_new (float, (gsize) T * B * I);
        for (guint b = 0; b < B; b++)
          fixture_fill (x, T, B, b, I, 300 + b);
        float *xs = g_new (float, (gsize) T * I);
        fixture_fill (xs, T, 1, 0, I, 301);       /* stream 1's sequence */
        float *ys[4];
        for (guint k = 0; k < 4; k++)
          ys[k] = g_new (float, (gsize) T * (k == 3 ? B : 1) * O);
        g_autoptr (RnnForward) fw = rnn_forward_new ();
        g_autoptr (RnnState) s0 = rnn_state_new (m, 1);
        rnn_forward_naive (m, s0, xs, T, 1, ys[0]);
        g_autoptr (RnnState) s1 = rnn_state_new (m, 1);
        rnn_forward (fw, m, s1, xs, T, 1, ys[1]);
        g_autoptr (RnnState) s2 = rnn_state_new (m, 1);
        for (guint t = 0; t < T; t++)
          rnn_forward (fw, m, s2, xs + (gsize) t * I, 1, 1, ys[2] + (gsize) t * O);
        g_autoptr (RnnState) s3 = rnn_state_new (m, B);
        rnn_forward (fw, m, s3, x, T, B, ys[3]);
        /* the general path's passes (projection, recurrence, head) */
        g_autoptr (RnnForward) plain = rnn_forward_new ();
        rnn_forward_set_plain (plain, TRUE);
        float *yp = g_new (float, (gsize) T * B * O);
        g_autoptr (RnnState) s4 = rnn_state_new (m, B);
        rnn_forward (plain, m, s4, x, T, B, yp);
        if (memcmp (yp, ys[3], (gsize) T * B * O * sizeof (float)) != 0)
          g_error ("cell %u H=%u L=%u I=%u O=%u: the fused paths differ from "
              "the general one", cell, cfg.hidden_size, cfg.num_layers, I, O);
        /* and split over two threads (shares of two and one stream) */
        g_autoptr (RnnForward) two = rnn_forward_new ();
        g_assert_true (rnn_forward_set_threads (two, 2, NULL));
        g_autoptr (RnnState) s5 = rnn_state_new (m, B);
        rnn_forward (two, m, s5, x, T, B, yp);
        if (memcmp (yp, ys[3], (gsize) T * B * O * sizeof (float)) != 0)
          g_error ("cell %u H=%u L=%u I=%u O=%u: two threads change the "
              "output", cell, cfg.hidden_size, cfg.num_layers, I, O);
        g_free (yp);
        for (guint t = 0; t < T; t++) {
          const float *row = ys[1] + (gsize) t * O;
          if (memcmp (row, ys[2] + (gsize) t * O, O * sizeof (float)) != 0
              || memcmp (row, ys[3] + ((gsize) t * B + 1) * O, O * sizeof (float)) != 0)
            g_error ("cell %u H=%u L=%u I=%u O=%u: step %u differs between one "
                "call, calls of one step and a call of three streams", cell,
                cfg.hidden_size, cfg.num_layers, I, O, t);
        }
        double worst = 0.0;
        for (gsize i = 0; i < (gsize) T * O; i++)
          worst = MAX (worst, fabs ((double) ys[1][i] - ys[0][i])
              / MAX (1.0, fabs (ys[0][i])));
        if (worst > 2e-6)
          g_error ("cell %u H=%u L=%u I=%u O=%u: fast vs naive %.3g", cell,
              cfg.hidden_size, cfg.num_layers, I, O, worst);
        for (guint k = 0; k < 4; k++)
          g_free (ys[k]);
        g_free (x);
        g_free (xs);
        checked++;
      }
  g_assert_cmpuint (checked, ==, 128);
}

/* B streams of @model in one call equal B separate runs, bit for bit. */
static void
assert_batch_equals_separate (const RnnModel *model, guint T, guint B)
{
  const RnnConfig *c = rnn_model_get_config (model);
  const guint I = c->input_size, O = rnn_model_get_output_size (model);
  float *x = g_new (float, (gsize) T * B * I);
  float *y = g_new (float, (gsize) T * B * O);
  float *xs = g_new (float, (gsize) T * I);
  float *ys = g_new (float, (gsize) T * O);
  for (guint b = 0; b < B; b++)
    fixture_fill (x, T, B, b, I, 500 + b);       /* a different sequence each */
  g_autoptr (RnnForward) fw = rnn_forward_new ();
  RnnState *state = c->bidirectional ? NULL : rnn_state_new (model, B);
  rnn_forward (fw, model, state, x, T, B, y);
  rnn_state_free (state);
  for (guint b = 0; b < B; b++) {
    fixture_fill (xs, T, 1, 0, I, 500 + b);
    state = c->bidirectional ? NULL : rnn_state_new (model, 1);
    rnn_forward (fw, model, state, xs, T, 1, ys);
    rnn_state_free (state);
    for (guint t = 0; t < T; t++)
      g_assert_cmpmem (ys + (gsize) t * O, O * sizeof (float),
          y + ((gsize) t * B + b) * O, O * sizeof (float));
  }
  g_free (x);
  g_free (y);
  g_free (xs);
  g_free (ys);
}

/* B streams in one call equal B separate runs, bit for bit; also for
 * bidirectional windows. */
static void
test_batch (void)
{
  /* 8 streams: the kernel runs groups sharing weight loads (LSTM and GRU:
   * three, three and two streams; Elman cells: four and four), or for H = 8
   * four pairs; every one must equal its own run, which for one layer of
   * H = 8 takes the kernel with the input projection and the head fused in
   * (recur_small_io).  7 streams: three, three and one left over, which
   * takes each block in the groups' pass (Elman: four and three; H = 8:
   * three pairs and one alone).  Then again with float16 recurrent weights
   * (the fixtures' W_hh fit L1, so the float32 copy of the rounded values;
   * test_f16_loads has the float16 loads). */
  for (guint n = 0; n < 4 * fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n % fixtures->len);
    g_autoptr (RnnModel) model = rnn_model_copy (f->model);
    if (n / fixtures->len % 2)
      g_assert_true (rnn_model_set_weight_precision (model, RNN_WEIGHTS_F16, NULL));
    assert_batch_equals_separate (model, 97, n < 2 * fixtures->len ? 8 : 7);
  }
}

/* A model of @cell, @H units, @L layers, @I inputs, a linear head of @O
 * outputs (none when 0), parameters from @seed. */
static RnnModel *
streams_model (RnnCell cell, guint H, guint L, guint I, guint O, guint seed)
{
  RnnConfig cfg;
  rnn_config_init (&cfg);
  cfg.cell = cell;
  cfg.hidden_size = H;
  cfg.num_layers = L;
  cfg.input_size = I;
  cfg.has_head = O > 0;
  cfg.output_size = O;
  cfg.head_activation = RNN_HEAD_ACT_NONE;
  g_autoptr (GError) error = NULL;
  RnnModel *m = rnn_model_new (&cfg, &error);
  g_assert_no_error (error);
  rnn_train_init_params (m, seed);
  rnn_model_seal (m);
  return m;
}

/* Each of B streams run in one batch, in calls of 15, 1 and 24 steps (the
 * state carried from call to call), equals the same stream run alone in
 * one call of 40 steps, bit for bit: every output and the final h and c.
 * Every cell, H = 8, 32 and 128 (a register kernel, the general
 * recurrence), one and two layers, the per-sample model (one input, a head
 * of one) and three inputs without a head, B = 5, 8 and 13 (groups of
 * three or four streams and what is left over). */
static void
test_streams_bits (void)
{
  const guint T = 40, calls[] = { 15, 1, 24 }, sizes[] = { 8, 32, 128 };
  const guint batches[] = { 5, 8, 13 };
  guint checked = 0;
  for (guint cell = 0; cell < 4; cell++)
    for (guint si = 0; si < G_N_ELEMENTS (sizes); si++)
      for (guint variant = 0; variant < 4; variant++) {
        const guint H = sizes[si], L = variant & 1 ? 2 : 1;
        const guint I = variant & 2 ? 3 : 1, O = variant & 2 ? 0 : 1;
        g_autoptr (RnnModel) m = streams_model ((RnnCell) cell, H, L, I, O,
            700 + checked);
        const guint Oy = rnn_model_get_output_size (m);
        const gboolean lstm = cell == RNN_CELL_LSTM;
        g_autoptr (RnnForward) fw = rnn_forward_new ();
        for (guint bi = 0; bi < G_N_ELEMENTS (batches); bi++) {
          const guint B = batches[bi];
          float *x = g_new (float, (gsize) T * B * I);
          float *y = g_new (float, (gsize) T * B * Oy);
          for (guint b = 0; b < B; b++)
            fixture_fill (x, T, B, b, I, 900 + b);
          g_autoptr (RnnState) sb = rnn_state_new (m, B);
          for (guint k = 0, t0 = 0; k < G_N_ELEMENTS (calls); t0 += calls[k++])
            rnn_forward (fw, m, sb, x + (gsize) t0 * B * I, calls[k], B,
                y + (gsize) t0 * B * Oy);
          float *xs = g_new (float, (gsize) T * I);
          float *ys = g_new (float, (gsize) T * Oy);
          for (guint b = 0; b < B; b++) {
            fixture_fill (xs, T, 1, 0, I, 900 + b);
            g_autoptr (RnnState) s1 = rnn_state_new (m, 1);
            rnn_forward (fw, m, s1, xs, T, 1, ys);
            for (guint t = 0; t < T; t++)
              if (memcmp (ys + (gsize) t * Oy,
                      y + ((gsize) t * B + b) * Oy, Oy * sizeof (float)) != 0)
                g_error ("cell %u H=%u L=%u I=%u: stream %u of %u differs "
                    "from its run alone at step %u", cell, H, L, I, b, B, t);
            for (guint k = 0; k < L; k++) {
              const float *h1 = rnn_state_h_block (s1, k, 0);
              const float *hb = rnn_state_h_block (sb, k, 0) + (gsize) b * H;
              if (memcmp (h1, hb, H * sizeof (float)) != 0
                  || (lstm && memcmp (rnn_state_c_block (s1, k, 0),
                          rnn_state_c_block (sb, k, 0) + (gsize) b * H,
                          H * sizeof (float)) != 0))
                g_error ("cell %u H=%u L=%u I=%u: stream %u of %u ends in "
                    "another state of layer %u than alone", cell, H, L, I,
                    b, B, k);
            }
          }
          g_free (xs);
          g_free (ys);
          g_free (x);
          g_free (y);
        }
        checked++;
      }
  g_assert_cmpuint (checked, ==, 48);
}

/* Streams split over threads (rnn_forward_set_threads) give the same bits
 * as one thread, for every fixture, in calls with enough work to split and
 * across two calls (state carried). */
static void
test_threads (void)
{
  const guint T = 300, B = 7;
  g_autoptr (RnnForward) one = rnn_forward_new ();
  g_autoptr (RnnForward) many = rnn_forward_new ();
  g_autoptr (GError) error = NULL;
  g_assert_cmpuint (rnn_forward_get_threads (one), ==, 1);
  g_assert_true (rnn_forward_set_threads (many, 3, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (rnn_forward_get_threads (many), ==, 3);
  for (guint n = 0; n < fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    const guint I = c->input_size, O = rnn_model_get_output_size (f->model);
    float *x = g_new (float, (gsize) T * B * I);
    float *y1 = g_new (float, (gsize) T * B * O), *y2 = g_new (float, (gsize) T * B * O);
    for (guint b = 0; b < B; b++)
      fixture_fill (x, T, B, b, I, 700 + b);
    RnnState *s1 = c->bidirectional ? NULL : rnn_state_new (f->model, B);
    RnnState *s2 = c->bidirectional ? NULL : rnn_state_new (f->model, B);
    for (guint call = 0; call < 2; call++) {
      rnn_forward (one, f->model, s1, x, T, B, y1);
      rnn_forward (many, f->model, s2, x, T, B, y2);
      if (memcmp (y1, y2, (gsize) T * B * O * sizeof (float)) != 0)
        g_error ("%s: threads change the output (call %u)", f->name, call);
    }
    rnn_state_free (s1);
    rnn_state_free (s2);
    g_free (x);
    g_free (y1);
    g_free (y2);
  }
  /* back to one thread */
  g_assert_true (rnn_forward_set_threads (many, 1, NULL));
  g_assert_cmpuint (rnn_forward_get_threads (many), ==, 1);
}

/* Carried state: a second call continues where the first stopped, and a reset
 * of one stream restarts only that stream. */
static void
test_state_reset (void)
{
  const Fixture *f = NULL;
  for (guint n = 0; n < fixtures->len && !f; n++) {
    const Fixture *g = g_ptr_array_index (fixtures, n);
    if (g_str_has_prefix (g->name, "lstm_L2_uni_I5_H8"))
      f = g;
  }
  g_assert_nonnull (f);
  const guint T = 17, B = 2, I = 5, O = rnn_model_get_output_size (f->model);
  float x[17 * 2 * 5], y1[17 * 2 * 16], y2[17 * 2 * 16];
  g_assert_cmpuint (O, <=, 16);
  for (guint b = 0; b < B; b++)
    fixture_fill (x, T, B, b, I, 17);
  g_autoptr (RnnForward) fw = rnn_forward_new ();
  g_autoptr (RnnState) state = rnn_state_new (f->model, B);
  rnn_forward (fw, f->model, state, x, T, B, y1);
  rnn_forward (fw, f->model, state, x, T, B, y2);
  /* carried: the second pass differs from the first */
  g_assert_cmpfloat (max_abs_diff (y1, y2, T * B * O), >, 1e-4);
  rnn_state_reset_stream (state, 1);
  rnn_forward (fw, f->model, state, x, T, B, y2);
  for (guint t = 0; t < T; t++) {
    /* stream 1 restarted from zero: equals the first pass */
    g_assert_cmpmem (y1 + (t * B + 1) * O, O * sizeof (float),
        y2 + (t * B + 1) * O, O * sizeof (float));
    /* stream 0 carried on: differs */
    if (t == 0)
      g_assert_cmpfloat (max_abs_diff (y1, y2, O), >, 1e-6);
  }
  rnn_state_reset (state);
  rnn_forward (fw, f->model, state, x, T, B, y2);
  g_assert_cmpmem (y1, sizeof (float) * T * B * O, y2, sizeof (float) * T * B * O);
}

/* After a call at a given size, calls at that size or smaller allocate
 * nothing. */
static void
test_no_allocation (void)
{
  if (!alloc_hook_works ()) {
    g_test_skip ("malloc is not ours to count (a sanitizer or valgrind)");
    return;
  }
  for (guint n = 0; n < fixtures->len; n += 7) {
    const Fixture *f = g_ptr_array_index (fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    const guint T = 480, B = 2, I = c->input_size, O = rnn_model_get_output_size (f->model);
    float *x = g_new0 (float, (gsize) T * B * I), *y = g_new (float, (gsize) T * B * O);
    g_autoptr (RnnForward) fw = rnn_forward_new ();
    RnnState *state = c->bidirectional ? NULL : rnn_state_new (f->model, B);
    rnn_forward (fw, f->model, state, x, T, B, y);
    alloc_count = 0;
    alloc_armed = 1;
    for (guint len = T; len > 0; len /= 3)
      rnn_forward (fw, f->model, state, x, len, B, y);
    alloc_armed = 0;
    g_assert_cmpint (alloc_count, ==, 0);
    rnn_state_free (state);
    g_free (x);
    g_free (y);
  }
  /* the counter itself works */
  alloc_armed = 1;
  g_free (g_malloc (16));
  alloc_armed = 0;
  g_assert_cmpint (alloc_count, >, 0);
}

/* ---- opt-in float16 recurrent weights ------------------------------------ */

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
/* The processor's own conversion (F16C), an independent reference. */
__attribute__ ((target ("f16c"))) static float
hw_round_to_f16 (float x)
{
  const __m128i h = _mm_cvtps_ph (_mm_set_ss (x), _MM_FROUND_TO_NEAREST_INT);
  return _mm_cvtss_f32 (_mm_cvtph_ps (h));
}
#endif

static void
test_f16_rounding (void)
{
  /* IEEE 754 binary16 facts */
  g_assert_cmpfloat (rnn_round_to_f16 (65504.0f), ==, 65504.0f);   /* largest */
  g_assert_cmpfloat (rnn_round_to_f16 (65519.0f), ==, 65504.0f);
  g_assert_true (isinf (rnn_round_to_f16 (65520.0f)));           /* ties away from 65504 */
  g_assert_cmpfloat (rnn_round_to_f16 (ldexpf (1.0f, -24)), ==, ldexpf (1.0f, -24));
  g_assert_cmpfloat (rnn_round_to_f16 (ldexpf (1.0f, -25)), ==, 0.0f);  /* tie to even */
  g_assert_cmpfloat (rnn_round_to_f16 (ldexpf (3.0f, -25)), ==, ldexpf (1.0f, -23));
  g_assert_cmpfloat (rnn_round_to_f16 (1.0f / 3.0f), ==, 1365.0f / 4096.0f);
  g_assert_cmpfloat (rnn_round_to_f16 (-2049.0f), ==, -2048.0f);       /* tie to even */
  g_assert_cmpfloat (rnn_round_to_f16 (-2051.0f), ==, -2052.0f);
#if defined(__x86_64__) || defined(__i386__)
  unsigned int a, b, c, d;
  if (!__get_cpuid (1, &a, &b, &c, &d) || !(c & bit_F16C)) {
    g_test_message ("no F16C here: skipped the comparison with the processor's conversion");
    return;
  }
  /* every float16-relevant exponent, mantissas at random, both signs */
  GRand *rand = g_rand_new_with_seed (16);
  for (guint n = 0; n < 2000000; n++) {
    const guint32 e = 96 + g_rand_int_range (rand, 0, 49);   /* 2^-31 .. 2^17 */
    const guint32 bits = (g_rand_boolean (rand) ? 0x80000000u : 0u) | (e << 23)
        | (g_rand_int (rand) & 0x7fffffu);
    float x;
    memcpy (&x, &bits, sizeof x);
    const float ours = rnn_round_to_f16 (x), hw = hw_round_to_f16 (x);
    if (memcmp (&ours, &hw, sizeof ours) != 0)
      g_error ("rnn_round_to_f16 (%a) = %a, F16C gives %a", x, ours, hw);
  }
  g_rand_free (rand);
#endif
}

/* With float16 weights the fast path computes exactly what the float32
 * model whose W_hh is rounded to float16 computes (naive path, PyTorch's
 * formulas): the opt-in changes nothing but the weights.  Also reports how
 * far that is from PyTorch's float32 outputs (the accuracy of the mode). */
/* A float32 copy of @model with its recurrent weights rounded to float16. */
static RnnModel *
rounded_copy (const RnnModel *model)
{
  RnnModel *rounded = rnn_model_copy (model);
  float *params = rnn_model_get_params (rounded, NULL);
  for (guint i = 0; i < rnn_model_get_n_tensors (rounded); i++) {
    const RnnParamInfo *ti = rnn_model_get_tensor_info (rounded, i);
    if (strstr (ti->name, "weight_hh"))
      for (gsize j = 0; j < ti->numel; j++)
        params[ti->offset + j] = rnn_round_to_f16 (params[ti->offset + j]);
  }
  rnn_model_seal (rounded);
  return rounded;
}

/* Models whose float32 W_hh exceed L1 (32 KB) take the float16 loads
 * (smaller ones, the fixtures among them, keep the float32 copy of the
 * rounded values): their outputs equal the float32 kernels' on the rounded
 * model bit for bit, one stream in one call and sample by sample, and 8
 * or 7 streams (the groups' loads),
 * with partial blocks and odd row counts (H = 67, 75). */
static void
test_f16_loads (void)
{
  static const struct { RnnCell cell; guint H, layers; } cases[] = {
    { RNN_CELL_LSTM, 64, 1 }, { RNN_CELL_LSTM, 67, 2 },
    { RNN_CELL_GRU, 64, 1 }, { RNN_CELL_GRU, 75, 1 },
    { RNN_CELL_RNN_TANH, 128, 1 }, { RNN_CELL_RNN_RELU, 99, 1 },
    { RNN_CELL_LSTM, 33, 1 },           /* 17 KB: no float16 loads */
  };
  for (guint n = 0; n < G_N_ELEMENTS (cases); n++) {
    RnnConfig cfg;
    rnn_config_init (&cfg);
    cfg.cell = cases[n].cell;
    cfg.input_size = 3;
    cfg.hidden_size = cases[n].H;
    cfg.num_layers = cases[n].layers;
    cfg.has_head = TRUE;
    cfg.output_size = 2;
    g_autoptr (GError) error = NULL;
    g_autoptr (RnnModel) model = rnn_model_new (&cfg, &error);
    g_assert_no_error (error);
    rnn_train_init_params (model, 7 + n);
    g_autoptr (RnnModel) half = rnn_model_copy (model);
    g_assert_true (rnn_model_set_weight_precision (half, RNN_WEIGHTS_F16, NULL));
    const gsize G = rnn_cell_gates (cfg.cell), H = cfg.hidden_size;
    g_assert_true ((half->plan.packed[0].w_hh_blocked.half != NULL)
        == (G * H * H * sizeof (float) > 32768));
    RnnModel *rounded = rounded_copy (model);
    const guint T = 150, O = cfg.output_size;
    float *y = run_sequence (half, T, FALSE), *y32 = run_sequence (rounded, T, FALSE);
    g_assert_cmpmem (y, (gsize) T * O * sizeof (float), y32, (gsize) T * O * sizeof (float));
    g_free (y);
    /* one sample per call: for one layer the direct path's one-step
     * kernel (step1_one ()), with the float16 loads */
    y = run_sample_by_sample (half, T);
    g_assert_cmpmem (y, (gsize) T * O * sizeof (float), y32, (gsize) T * O * sizeof (float));
    g_free (y);
    g_free (y32);
    rnn_model_unref (rounded);
    assert_batch_equals_separate (half, 40, 8);
    assert_batch_equals_separate (half, 40, 7);
  }
}

static void
test_f16_weights (void)
{
  double worst_same = 0.0, worst_torch[4] = { 0 };
  const guint T = 1000;
  for (guint n = 0; n < fixtures->len; n++) {
    const Fixture *f = g_ptr_array_index (fixtures, n);
    const RnnConfig *c = rnn_model_get_config (f->model);
    const guint O = rnn_model_get_output_size (f->model);
    g_autoptr (GError) error = NULL;

    RnnModel *half = rnn_model_copy (f->model);
    g_assert_true (rnn_model_set_weight_precision (half, RNN_WEIGHTS_F16, &error));
    g_assert_no_error (error);
    g_assert_cmpint (rnn_model_get_weight_precision (half), ==, RNN_WEIGHTS_F16);
    /* copies keep the precision */
    RnnModel *half2 = rnn_model_copy (half);
    g_assert_cmpint (rnn_model_get_weight_precision (half2), ==, RNN_WEIGHTS_F16);
    rnn_model_unref (half2);

    RnnModel *rounded = rounded_copy (f->model);

    float *y = run_sequence (half, T, FALSE);
    float *ref = run_sequence (rounded, T, TRUE);
    /* bit for bit the float32 fast path on the rounded model: float16
     * weights convert to float32 exactly, the rest is the same code */
    float *y32 = run_sequence (rounded, T, FALSE);
    g_assert_cmpmem (y, (gsize) T * O * sizeof (float), y32, (gsize) T * O * sizeof (float));
    g_free (y32);
    /* and, independently, the plain loops on the rounded model: as close as
     * naive and fast are on any model (worst fixture, a two-layer
     * bidirectional ReLU RNN with H=1: 1.2e-6 relative beyond 1) */
    double same = 0.0;
    for (gsize i = 0; i < (gsize) T * O; i++)
      same = MAX (same, fabs ((double) y[i] - ref[i]) / MAX (1.0, fabs (ref[i])));
    if (same > 2e-6)
      g_test_message ("%s: f16 fast path vs rounded naive %.3g", f->name, same);
    g_assert_cmpfloat (same, <=, 2e-6);
    worst_same = MAX (worst_same, same);

    GArray *steps;
    float *torch = expected_output (f, T, &steps);
    for (guint k = 0; k < steps->len; k++) {
      const guint t = g_array_index (steps, guint, k);
      worst_torch[c->cell] = MAX (worst_torch[c->cell],
          max_abs_diff (y + (gsize) t * O, torch + (gsize) k * O, O));
    }
    g_array_unref (steps);
    g_free (torch);
    g_free (y);
    g_free (ref);
    rnn_model_unref (rounded);
    rnn_model_unref (half);
  }
  g_test_message ("float16 W_hh, %u models, T=%u: fast path vs naive path on the "
      "rounded model %.2e (relative beyond 1); max abs error vs PyTorch float32:", fixtures->len, T,
      worst_same);
  for (guint c = 0; c < 4; c++)
    g_test_message ("  %-8s %.2e", rnn_cell_to_string ((RnnCell) c), worst_torch[c]);

  /* back to float32: the default numbers again, bit for bit */
  const Fixture *f = g_ptr_array_index (fixtures, 0);
  RnnModel *m = rnn_model_copy (f->model);
  g_assert_true (rnn_model_set_weight_precision (m, RNN_WEIGHTS_F16, NULL));
  g_assert_true (rnn_model_set_weight_precision (m, RNN_WEIGHTS_F32, NULL));
  float *a = run_sequence (m, 100, FALSE), *b = run_sequence (f->model, 100, FALSE);
  g_assert_cmpmem (a, 100 * rnn_model_get_output_size (m) * sizeof (float),
      b, 100 * rnn_model_get_output_size (m) * sizeof (float));
  g_free (a);
  g_free (b);

  /* a weight beyond float16's range is refused with a message naming it */
  float *p = rnn_model_get_params (m, NULL);
  const gint t = rnn_model_find_tensor (m, "rnn.weight_hh_l0");
  g_assert_cmpint (t, >=, 0);
  p[rnn_model_get_tensor_info (m, t)->offset + 1] = 1e5f;
  rnn_model_seal (m);
  g_autoptr (GError) error = NULL;
  g_assert_false (rnn_model_set_weight_precision (m, RNN_WEIGHTS_F16, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_TENSOR);
  g_assert_nonnull (strstr (error->message, "weight_hh of layer 0"));
  g_assert_nonnull (strstr (error->message, "element 1"));
  g_assert_cmpint (rnn_model_get_weight_precision (m), ==, RNN_WEIGHTS_F32);
  rnn_model_unref (m);
}

static RnnModel *
shape_model (RnnCell cell, guint layers, gboolean bidir, guint H)
{
  RnnConfig cfg;
  rnn_config_init (&cfg);
  cfg.cell = cell;
  cfg.num_layers = layers;
  cfg.bidirectional = bidir;
  cfg.hidden_size = H;
  RnnModel *m = rnn_model_new (&cfg, NULL);
  g_assert_nonnull (m);
  return m;
}

/* A state fits a model of the same shape: c or not (LSTM or another
 * cell), layers, directions, hidden size; input, head and batch do not
 * matter (rnn_forward () checks the batch itself). */
static void
test_state_fits (void)
{
  RnnModel *lstm = shape_model (RNN_CELL_LSTM, 2, FALSE, 16);
  RnnState *s = rnn_state_new (lstm, 3);
  g_assert_true (rnn_state_fits (s, lstm));
  static const struct { RnnCell cell; guint layers; gboolean bidir; guint H;
    gboolean fits; } cases[] = {
    { RNN_CELL_LSTM, 2, FALSE, 16, TRUE },
    { RNN_CELL_GRU, 2, FALSE, 16, FALSE },      /* no c */
    { RNN_CELL_LSTM, 1, FALSE, 16, FALSE },
    { RNN_CELL_LSTM, 3, FALSE, 16, FALSE },
    { RNN_CELL_LSTM, 2, TRUE, 16, FALSE },
    { RNN_CELL_LSTM, 2, FALSE, 17, FALSE },
  };
  for (guint n = 0; n < G_N_ELEMENTS (cases); n++) {
    RnnModel *m = shape_model (cases[n].cell, cases[n].layers,
        cases[n].bidir, cases[n].H);
    if (rnn_state_fits (s, m) != cases[n].fits)
      g_error ("case %u: the state %s", n, cases[n].fits ? "does not fit"
          : "fits");
    rnn_model_unref (m);
  }
  rnn_state_free (s);
  /* the cells without c share their states' shape */
  RnnModel *gru = shape_model (RNN_CELL_GRU, 1, TRUE, 8);
  RnnModel *tanh_rnn = shape_model (RNN_CELL_RNN_TANH, 1, TRUE, 8);
  s = rnn_state_new (gru, 1);
  g_assert_true (rnn_state_fits (s, tanh_rnn));
  rnn_state_free (s);
  rnn_model_unref (gru);
  rnn_model_unref (tanh_rnn);
  rnn_model_unref (lstm);
}

/* The kernel family under test: RNN_KERNELS (generic, avx2, avx512) when
 * set, as the meson tests run this file once per family; NULL where that
 * family is not built or this processor lacks it, and every test skips. */
static const char *family;
static gboolean family_missing;

static void
run_case (gconstpointer data)
{
  if (family_missing) {
    g_autofree char *why = g_strdup_printf ("RNN_KERNELS=%s: this "
        "processor (or build) has no such kernels", family);
    g_test_skip (why);
    return;
  }
  ((GTestFunc) data) ();
}

static void
add_case (const char *path, GTestFunc fn)
{
  g_test_add_data_func (path, (gconstpointer) fn, run_case);
}

/* The family asked for is the one that runs. */
static void
test_kernel_family (void)
{
  if (family)
    g_assert_true (rnn_kernels_get () == rnn_kernels_by_name (family));
  g_test_message ("kernels: %s", rnn_kernels_get ()->name);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  family = g_getenv ("RNN_KERNELS");
  if (family && !*family)
    family = NULL;
  family_missing = family && !rnn_kernels_by_name (family);
  load_fixtures ();
  add_case ("/forward/kernels/family", test_kernel_family);
  add_case ("/forward/fast/matches-torch", test_parity_fast);
  add_case ("/forward/naive/matches-torch", test_parity_naive);
  add_case ("/forward/naive/matches-fast", test_naive_vs_fast);
  add_case ("/forward/layers/matches-torch", test_layers_parity);
  add_case ("/forward/layers/chunking-batch-reset", test_layers_streaming);
  add_case ("/forward/layers/paths-and-initial-state", test_layers_paths);
  add_case ("/forward/streaming/chunking-is-bit-exact", test_chunking);
  add_case ("/forward/fast/kernel-sizes", test_kernel_sizes);
  add_case ("/forward/streaming/batch-equals-separate-runs", test_batch);
  add_case ("/forward/f16/loads-equal-rounded-float32", test_f16_loads);
  add_case ("/forward/streaming/streams-equal-alone", test_streams_bits);
  add_case ("/forward/streaming/threads-change-nothing", test_threads);
  add_case ("/forward/state/carry-and-reset", test_state_reset);
  add_case ("/forward/state/fits", test_state_fits);
  add_case ("/forward/fast/no-allocation-in-steady-state", test_no_allocation);
  add_case ("/forward/f16/rounding", test_f16_rounding);
  add_case ("/forward/f16/weights", test_f16_weights);
  int ret = g_test_run ();
  g_ptr_array_unref (fixtures);
  g_ptr_array_unref (layer_fixtures);
  return ret;
}
