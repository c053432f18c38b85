#!/usr/bin/env bash
echo "demo: not wired yet" >&2
