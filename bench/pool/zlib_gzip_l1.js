// zlib_gzip.js at level 1 (Z_BEST_SPEED): same data, same check line.
'use strict';
if (process.argv[3] === undefined) process.argv[3] = '1';
require('./zlib_gzip.js');
