// Starts kinesalite (installed under .tools/ by `make kinesalite`) on 127.0.0.1 only,
// on the port given as argv[2] (0 = any free port), and prints "LISTENING <port>"; exits at EOF on stdin.
const path = require('path')
const kinesalite = require(path.resolve(__dirname, '../../.tools/node_modules/kinesalite'))
const port = parseInt(process.argv[2] || '0', 10)
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 })
server.listen(port, '127.0.0.1', () => {
  console.log('LISTENING ' + server.address().port)
})
// Stop by itself when whoever started it is gone: its stdin is a pipe from that process, closed at its death
// (an orphan of a killed test run lived on for over an hour).
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
