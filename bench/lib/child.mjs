// The child side of the bench's IPC: answer {id, cmd, args} requests from the orchestrator, and exit with it.
export function serve(handlers) {
  process.on('message', async (msg) => {
    if (!msg || typeof msg.id !== 'number') return;
    const handler = handlers[msg.cmd];
    try {
      if (!handler) throw new Error(`unknown command ${msg.cmd}`);
      const result = await handler(msg.args ?? {});
      process.send({ id: msg.id, result });
    } catch (err) {
      process.send({ id: msg.id, error: String(err?.stack ?? err) });
    }
  });
  // The orchestrator went away (finished, crashed or was interrupted): never outlive it.
  process.on('disconnect', () => process.exit(0));
}

export function ready(info = {}) {
  process.send({ ready: true, ...info });
}
