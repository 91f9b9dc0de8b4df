// TCP echo, a hundred connections: tcp_echo.js with its arguments (N MB, 100).
'use strict';
require('./tcp_echo.js');
