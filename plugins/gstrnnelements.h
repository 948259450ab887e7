/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One GST_ELEMENT_REGISTER_DECLARE per element of the plugin, and what the
 * elements share. */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

GST_ELEMENT_REGISTER_DECLARE (rnnfilter);
GST_ELEMENT_REGISTER_DECLARE (rnntrain);

/* Registers the enum @name with @values (NULL-terminated) once; @once is
 * the caller's static zero-initialised slot.  For the *_get_type ()
 * functions of the elements' enum properties. */
static inline GType
gst_rnn_enum_type (gsize * once, const gchar * name, const GEnumValue * values)
{
  if (g_once_init_enter (once))
    g_once_init_leave (once, g_enum_register_static (name, values));
  return (GType) * once;
}

G_END_DECLS
