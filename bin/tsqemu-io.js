#!/usr/bin/env node
import "../dist/tools/tsqemu-io.js";
