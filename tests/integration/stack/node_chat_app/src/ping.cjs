// A CommonJS callback handler beside the ES modules (a .cjs file under "type": "module").
// {"action":"ping","sleep":ms} waits that long first, past the 2 s timeout if asked.
const REPLY = "pong";

exports.handler = (event, context, callback) => {
  const { sleep = 0 } = JSON.parse(event.body);
  console.log(`ping from ${event.requestContext.connectionId}`);
  setTimeout(() => {
    callback(null, { statusCode: 200, body: JSON.stringify({ reply: REPLY, pid: process.pid }) });
  }, sleep);
};
