#!/usr/bin/env node
import "../dist/tools/tsqemu-img.js";
