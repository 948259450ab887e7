// SPDX-License-Identifier: LGPL-2.1-or-later
// The peer of tests/bench/bench-rtneural: one RTNeural model (I=1, LSTM or
// GRU of H units, Dense(H->1)) with the weights of a gst-rnn model, one
// forward() per sample as RTNeural's users drive it.  Compiled by the
// driver against an RTNeural source tree kept outside this repository.
//
//   rtneural-peer CELL H API WEIGHTS STEPS REPEATS [OUTPUTS]
//
// CELL lstm|gru, API ct (compile-time ModelT) | rt (run-time Model),
// WEIGHTS the raw float32 file the driver writes (PyTorch's layouts, in
// the order W_ih [G*H][1], W_hh [G*H][H], b_ih [G*H], b_hh [G*H],
// head.weight [1][H], head.bias [1]).  Input x[n] = 0.5 sin(0.01 n), as
// bench-forward's.  Prints "ns_per_sample <median over REPEATS>"; with
// OUTPUTS, writes the first min(STEPS, 4096) outputs there as float32.
#include <RTNeural/RTNeural.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

using Mat = std::vector<std::vector<float>>;

struct Weights
{
  int H = 0, G = 0;
  std::vector<float> w_ih, w_hh, b_ih, b_hh, head_w, head_b;
};

static bool
read_weights (const char *path, int H, int G, Weights &w)
{
  std::ifstream f (path, std::ios::binary);
  auto take = [&f] (std::vector<float> &v, size_t n) {
    v.resize (n);
    f.read (reinterpret_cast<char *> (v.data ()), n * sizeof (float));
  };
  w.H = H;
  w.G = G;
  take (w.w_ih, (size_t) G * H);
  take (w.w_hh, (size_t) G * H * H);
  take (w.b_ih, (size_t) G * H);
  take (w.b_hh, (size_t) G * H);
  take (w.head_w, H);
  take (w.head_b, 1);
  return bool (f);
}

// RTNeural takes Keras' layouts: kernels [inputs][gates*H], gates in
// Keras order.  PyTorch row p of gate block b maps to column b'*H + p.
// LSTM: i f g o in both.  GRU: PyTorch r z n, Keras z r h.
static int
keras_block (bool gru, int b)
{
  if (!gru)
    return b;
  return b == 0 ? 1 : b == 1 ? 0 : 2;
}

template <bool gru, typename Layer>
static void
set_recurrent (Layer &layer, const Weights &w)
{
  const int H = w.H, G = w.G;
  Mat W (1, std::vector<float> (G * H)), U (H, std::vector<float> (G * H));
  for (int b = 0; b < G; b++)
    for (int p = 0; p < H; p++) {
      int col = keras_block (gru, b) * H + p, row = b * H + p;
      W[0][col] = w.w_ih[row];
      for (int j = 0; j < H; j++)
        U[j][col] = w.w_hh[(size_t) row * H + j];
    }
  layer.setWVals (W);
  layer.setUVals (U);
  if constexpr (!gru) {
    // LSTM: one bias, b_ih + b_hh
    std::vector<float> B (G * H);
    for (int r = 0; r < G * H; r++)
      B[r] = w.b_ih[r] + w.b_hh[r];
    layer.setBVals (B);
  } else {
    // GRU (reset_after): the input and the recurrent bias apart
    Mat B (2, std::vector<float> (G * H));
    for (int b = 0; b < G; b++)
      for (int p = 0; p < H; p++) {
        int col = keras_block (gru, b) * H + p;
        B[0][col] = w.b_ih[b * H + p];
        B[1][col] = w.b_hh[b * H + p];
      }
    layer.setBVals (B);
  }
}

template <typename Dense>
static void
set_head (Dense &d, const Weights &w)
{
  Mat V (1, w.head_w);
  d.setWeights (V);
  d.setBias (w.head_b.data ());
}

template <typename Model>
static int
run (Model &model, int steps, int repeats, const char *outputs)
{
  std::vector<float> x (steps), y (std::min (steps, 4096));
  for (int n = 0; n < steps; n++)
    x[n] = 0.5f * sinf (0.01f * (float) n);
  std::vector<double> ns;
  float sink = 0.0f;
  // one untimed pass: caches and branch predictors, as bench-forward
  model.reset ();
  for (int n = 0; n < std::min (steps, 1920); n++)
    sink += model.forward (&x[n]);
  for (int r = 0; r < repeats; r++) {
    model.reset ();
    auto t0 = std::chrono::steady_clock::now ();
    for (int n = 0; n < steps; n++) {
      float v = model.forward (&x[n]);
      if (n < (int) y.size ())
        y[n] = v;
    }
    auto t1 = std::chrono::steady_clock::now ();
    ns.push_back (std::chrono::duration<double, std::nano> (t1 - t0).count ()
        / steps);
  }
  std::sort (ns.begin (), ns.end ());
  std::printf ("ns_per_sample %.2f\n", ns[ns.size () / 2]);
  if (outputs) {
    FILE *f = std::fopen (outputs, "wb");
    if (!f || std::fwrite (y.data (), sizeof (float), y.size (), f) != y.size ())
      return 1;
    std::fclose (f);
  }
  return sink == 12345.678f;    // keeps the warm-up pass
}

template <int H>
static int
run_ct (bool gru, const Weights &w, int steps, int repeats, const char *out)
{
  if (gru) {
    static RTNeural::ModelT<float, 1, 1, RTNeural::GRULayerT<float, 1, H>,
        RTNeural::DenseT<float, H, 1>> model;
    set_recurrent<true> (model.template get<0> (), w);
    set_head (model.template get<1> (), w);
    return run (model, steps, repeats, out);
  }
  static RTNeural::ModelT<float, 1, 1, RTNeural::LSTMLayerT<float, 1, H>,
      RTNeural::DenseT<float, H, 1>> model;
  set_recurrent<false> (model.template get<0> (), w);
  set_head (model.template get<1> (), w);
  return run (model, steps, repeats, out);
}

static int
run_rt (bool gru, const Weights &w, int steps, int repeats, const char *out)
{
  RTNeural::Model<float> model (1);
  if (gru) {
    auto *l = new RTNeural::GRULayer<float> (1, w.H);
    set_recurrent<true> (*l, w);
    model.addLayer (l);
  } else {
    auto *l = new RTNeural::LSTMLayer<float> (1, w.H);
    set_recurrent<false> (*l, w);
    model.addLayer (l);
  }
  auto *d = new RTNeural::Dense<float> (w.H, 1);
  set_head (*d, w);
  model.addLayer (d);
  return run (model, steps, repeats, out);
}

int
main (int argc, char **argv)
{
  if (argc < 7) {
    std::fprintf (stderr, "usage: rtneural-peer lstm|gru H ct|rt WEIGHTS "
        "STEPS REPEATS [OUTPUTS]\n");
    return 2;
  }
  std::string cell = argv[1], api = argv[3];
  int H = std::atoi (argv[2]), steps = std::atoi (argv[5]),
      repeats = std::atoi (argv[6]);
  bool gru = cell == "gru";
  const char *out = argc > 7 ? argv[7] : nullptr;
  Weights w;
  if ((!gru && cell != "lstm") || (api != "ct" && api != "rt") || steps < 1
      || repeats < 1 || !read_weights (argv[4], H, gru ? 3 : 4, w)) {
    std::fprintf (stderr, "rtneural-peer: bad arguments or weights file\n");
    return 2;
  }
  if (api == "rt")
    return run_rt (gru, w, steps, repeats, out);
  switch (H) {
    case 8: return run_ct<8> (gru, w, steps, repeats, out);
    case 16: return run_ct<16> (gru, w, steps, repeats, out);
    case 32: return run_ct<32> (gru, w, steps, repeats, out);
    case 64: return run_ct<64> (gru, w, steps, repeats, out);
    case 128: return run_ct<128> (gru, w, steps, repeats, out);
  }
  std::fprintf (stderr, "rtneural-peer: compile-time models for H = 8, 16, "
      "32, 64, 128 only\n");
  return 2;
}
