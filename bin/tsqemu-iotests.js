#!/usr/bin/env node
import "../dist/tools/tsqemu-iotests.js";
