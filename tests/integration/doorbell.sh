#!/bin/bash
. "${BASH_SOURCE%/*}/lib.sh"
skip "not written yet"
