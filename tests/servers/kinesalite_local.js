// Starts kinesalite (installed under .tools/ by `make kinesalite`) on 127.0.0.1 only,
// on the port given as argv[2] (0 = any free port), and prints "LISTENING <port>".
const path = require('path')
const kinesalite = require(path.resolve(__dirname, '../../.tools/node_modules/kinesalite'))
const port = parseInt(process.argv[2] || '0', 10)
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 })
server.listen(port, '127.0.0.1', () => {
  console.log('LISTENING ' + server.address().port)
})
process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
