#!/usr/bin/env node
import '../dist/tools/bench.js';
