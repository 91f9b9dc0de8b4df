// The echoing child of fork_ipc.js.
process.on('message', (msg) => process.send(msg));
process.on('disconnect', () => process.removeAllListeners('message'));
process.send('ready');
