#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# unpack-fixtures.sh TARBALL DESTDIR STAMP: unpack committed fixtures into the build tree.
set -e
tar -xJf "$1" -C "$2"
touch "$3"
