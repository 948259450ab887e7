/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The "rnn" plugin: recurrent neural networks as stateful sequence filters. */
#include "gstrnnelements.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  gboolean ret = FALSE;

  ret |= GST_ELEMENT_REGISTER (rnnfilter, plugin);
  ret |= GST_ELEMENT_REGISTER (rnntrain, plugin);

  return ret;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, rnn,
    "Recurrent neural networks (RNN, LSTM, GRU) as stateful sequence filters",
    plugin_init, VERSION, "LGPL", GST_PACKAGE_NAME, GST_PACKAGE_ORIGIN)
