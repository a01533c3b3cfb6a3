import { io as ioV4, type Socket } from 'socket.io-client';
// socket.io-client 2.x speaks Engine.IO 3, like the legacy IMKIT js-lib builds.
// @ts-expect-error no types for the aliased v2 package
import ioV2 from 'socket.io-client-v2';

const SERVER_EVENTS = ['chat message', 'room', 'lastRead', 'typing', 'roomPref', 'myPrefChange', 'myPrefDelete', 'invitation', 'cancelInvitation', 'userDeleteMessages'];

export type Generation = 'bundle' | 'flutter' | 'legacy' | 'vue';

/** A socket client of one IMKIT client generation (realtime spec §0.1), recording every event it receives. */
export class TestClient {
  readonly events: Array<{ event: string; payload: any }> = [];
  private waiters: Array<() => void> = [];
  disconnected = false;

  private constructor(
    readonly socket: Socket,
    readonly generation: Generation,
  ) {
    // socket.io-client 2 has no onAny: listen to every server event of realtime spec §3.2 by name.
    for (const event of SERVER_EVENTS) {
      socket.on(event, (arg: unknown) => {
        this.events.push({ event, payload: this.decode(arg) });
        for (const w of this.waiters.splice(0)) w();
      });
    }
    socket.on('disconnect', () => {
      this.disconnected = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async connect(base: string, generation: Generation): Promise<TestClient> {
    const opts = { transports: ['websocket'], forceNew: true, reconnection: false };
    const socket = (generation === 'legacy' ? ioV2(base, opts) : ioV4(base, opts)) as Socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return new TestClient(socket, generation);
  }

  get base64(): boolean {
    return this.generation !== 'vue';
  }

  decode(arg: unknown): any {
    if (this.base64 && typeof arg === 'string') {
      const text = Buffer.from(arg, 'base64').toString('utf8');
      try {
        return JSON.parse(text);
      } catch {
        return text; // myPrefDelete carries a bare string
      }
    }
    return arg;
  }

  emitAck(event: string, ...args: unknown[]): Promise<unknown[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for ${event}`)), this.disconnected ? 50 : 3000);
      this.socket.emit(event, ...args, (...res: unknown[]) => {
        clearTimeout(timer);
        resolve(res);
      });
    });
  }

  /** conf + auth as this generation does it; resolves to the decoded auth ack (undefined for Vue, which sends none). */
  async login(token: string, clientKey: string): Promise<any> {
    if (this.generation === 'vue') {
      this.socket.emit('auth2', token, { CLIENT_KEY: clientKey, Authorization: token });
      await new Promise((r) => setTimeout(r, 150));
      return undefined;
    }
    const confAck = await this.emitAck('conf', { encoding: 'base64' });
    if (confAck.length !== 1) throw new Error(`conf ack must carry one argument, got ${confAck.length}`);
    const ack =
      this.generation === 'legacy'
        ? await this.emitAck('auth', token)
        : this.generation === 'flutter'
          ? await this.emitAck('auth2', token, { 'IM-CLIENT-KEY': clientKey, 'IM-Authorization': token })
          : await this.emitAck('auth2', token, { CLIENT_KEY: clientKey, Authorization: token });
    if (ack.length !== 1) throw new Error(`auth ack must carry one argument, got ${ack.length}`);
    return this.decode(ack[0]);
  }

  /** Waits for the next event named `event` matching `pred` (already received ones count), or fails after 3 s. */
  async next(event: string, pred: (p: any) => boolean = () => true, ms = 3000): Promise<any> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.events.findIndex((e) => e.event === event && pred(e.payload));
      if (i >= 0) return this.events.splice(i, 1)[0]!.payload;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.generation}: no "${event}" event; got ${JSON.stringify(this.events.map((e) => e.event))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Asserts nothing named `event` arrives within `ms`. */
  async none(event: string, ms = 300): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
    const got = this.events.filter((e) => e.event === event);
    if (got.length) throw new Error(`${this.generation}: unexpected "${event}": ${JSON.stringify(got)}`);
  }

  async waitDisconnect(ms = 2000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.disconnected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    return this.disconnected;
  }

  close(): void {
    this.socket.disconnect();
  }
}
