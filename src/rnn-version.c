/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnn_version(): the library's version at run time (rnn-version.h). */
#include "rnn.h"

const char *
rnn_version (void)
{
  return RNN_VERSION_STRING;
}

void
rnn_get_version (guint *major, guint *minor, guint *micro)
{
  if (major)
    *major = RNN_VERSION_MAJOR;
  if (minor)
    *minor = RNN_VERSION_MINOR;
  if (micro)
    *micro = RNN_VERSION_MICRO;
}
