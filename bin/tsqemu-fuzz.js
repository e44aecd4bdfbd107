#!/usr/bin/env node
import "../dist/tools/tsqemu-fuzz.js";
