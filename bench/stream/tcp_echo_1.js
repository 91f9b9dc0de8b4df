// TCP echo, one connection: tcp_echo.js with its arguments (N MB, 1).
'use strict';
require('./tcp_echo.js');
