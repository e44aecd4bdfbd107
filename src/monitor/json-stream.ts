import { assert } from '../engine/assert.js';
import type { JsonObject, JsonValue } from './json-value.js';

/**
 * QEMU's JSON message stream (json-lexer.c + json-streamer.c + json-parser.c, re-created from
 * their observable behaviour): input arrives in arbitrary chunks; a message ends when its braces
 * and brackets balance (no newline needed); a lexing error is reported as `stray '<text>'` and the
 * lexer skips to the next structural character or newline; every error is reported once and the
 * stream carries on. Limits bound memory per client exactly like QEMU's.
 */

/** QEMU's MAX_TOKEN_SIZE: bytes of token text one message may accumulate. */
export const QEMU_MAX_TOKEN_SIZE = 64 * 1024 * 1024;
/** QEMU's MAX_TOKEN_COUNT. */
export const QEMU_MAX_TOKEN_COUNT = 2 * 1024 * 1024;
/** QEMU's MAX_NESTING. */
export const QEMU_MAX_NESTING = 1024;

export interface JsonStreamLimits {
  readonly maxTokenSize?: number;
  readonly maxTokenCount?: number;
  readonly maxNesting?: number;
}

const enum Tok {
  LCurly,
  RCurly,
  LSquare,
  RSquare,
  Comma,
  Colon,
  String,
  Integer,
  Float,
  Keyword,
}

interface Token {
  readonly type: Tok;
  readonly text: string;
}

const enum Lx {
  Start,
  Str,
  StrEsc,
  StrHex,
  NumSign,
  NumZero,
  NumInt,
  NumDot,
  NumFrac,
  NumExp,
  NumExpSign,
  NumExpDigits,
  Keyword,
  Recovery,
}

/** Receives each complete message: a value, or the text of a GenericError. */
export type JsonEmit = (value: JsonValue | undefined, error: string | undefined) => void;

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isHex(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function isLower(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}

const STRUCTURAL: Readonly<Record<number, Tok>> = { 0x7b: Tok.LCurly, 0x7d: Tok.RCurly, 0x5b: Tok.LSquare, 0x5d: Tok.RSquare, 0x2c: Tok.Comma, 0x3a: Tok.Colon };

export class JsonStream {
  private state = Lx.Start;
  private quote = 0;
  private hexLeft = 0;
  /** Text of the token being lexed that came from earlier chunks. */
  private partial = '';
  private tokens: Token[] = [];
  private braces = 0;
  private brackets = 0;
  private tokenSize = 0;
  private readonly maxTokenSize: number;
  private readonly maxTokenCount: number;
  private readonly maxNesting: number;

  constructor(
    private readonly emit: JsonEmit,
    limits: JsonStreamLimits = {},
  ) {
    this.maxTokenSize = limits.maxTokenSize ?? QEMU_MAX_TOKEN_SIZE;
    this.maxTokenCount = limits.maxTokenCount ?? QEMU_MAX_TOKEN_COUNT;
    this.maxNesting = limits.maxNesting ?? QEMU_MAX_NESTING;
    assert(this.maxTokenSize > 0 && this.maxTokenCount > 0 && this.maxNesting > 0, 'bad JSON limits');
  }

  /** Characters held for an unfinished message (bounded by the token size limit). */
  get bufferedChars(): number {
    return this.tokenSize + this.partial.length;
  }

  /** Feeds a chunk of input; complete messages are emitted synchronously, in order. */
  feed(chunk: string): void {
    let start = 0; // where the current token began in this chunk
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const c = chunk.charCodeAt(i);
      switch (this.state) {
        case Lx.Start: {
          if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
          const structural = STRUCTURAL[c];
          start = i;
          if (structural !== undefined) {
            this.token(structural, chunk[i]!);
          } else if (c === 0x22 || c === 0x27) {
            this.state = Lx.Str;
            this.quote = c;
          } else if (c === 0x2d) {
            this.state = Lx.NumSign;
          } else if (c === 0x30) {
            this.state = Lx.NumZero;
          } else if (isDigit(c)) {
            this.state = Lx.NumInt;
          } else if (isLower(c)) {
            this.state = Lx.Keyword;
          } else {
            this.lexError(chunk, start, i);
          }
          continue;
        }
        case Lx.Str:
          if (c === this.quote) {
            this.finish(Tok.String, chunk, start, i + 1);
          } else if (c === 0x5c) {
            this.state = Lx.StrEsc;
          } else if (c < 0x20) {
            this.lexError(chunk, start, i);
          }
          break;
        case Lx.StrEsc:
          if (c === 0x75) {
            this.state = Lx.StrHex;
            this.hexLeft = 4;
          } else if (c < 0x20) {
            this.lexError(chunk, start, i);
          } else {
            this.state = Lx.Str;
          }
          break;
        case Lx.StrHex:
          if (!isHex(c)) {
            this.lexError(chunk, start, i);
          } else if (--this.hexLeft === 0) {
            this.state = Lx.Str;
          }
          break;
        case Lx.NumSign:
          if (c === 0x30) this.state = Lx.NumZero;
          else if (isDigit(c)) this.state = Lx.NumInt;
          else this.lexError(chunk, start, i);
          break;
        case Lx.NumZero:
        case Lx.NumInt:
          if (isDigit(c)) {
            if (this.state === Lx.NumZero) this.lexError(chunk, start, i);
          } else if (c === 0x2e) {
            this.state = Lx.NumDot;
          } else if (c === 0x65 || c === 0x45) {
            this.state = Lx.NumExp;
          } else {
            this.finish(Tok.Integer, chunk, start, i);
            i--; // the character that ended the number starts the next token
          }
          break;
        case Lx.NumDot:
          if (isDigit(c)) this.state = Lx.NumFrac;
          else this.lexError(chunk, start, i);
          break;
        case Lx.NumFrac:
          if (isDigit(c)) break;
          if (c === 0x65 || c === 0x45) {
            this.state = Lx.NumExp;
          } else {
            this.finish(Tok.Float, chunk, start, i);
            i--;
          }
          break;
        case Lx.NumExp:
          if (c === 0x2b || c === 0x2d) this.state = Lx.NumExpSign;
          else if (isDigit(c)) this.state = Lx.NumExpDigits;
          else this.lexError(chunk, start, i);
          break;
        case Lx.NumExpSign:
          if (isDigit(c)) this.state = Lx.NumExpDigits;
          else this.lexError(chunk, start, i);
          break;
        case Lx.NumExpDigits:
          if (!isDigit(c)) {
            this.finish(Tok.Float, chunk, start, i);
            i--;
          }
          break;
        case Lx.Keyword:
          if (!isLower(c)) {
            this.finish(Tok.Keyword, chunk, start, i);
            i--;
          }
          break;
        case Lx.Recovery:
          // Skip to something that can only start fresh input: a structural character or a newline.
          if (c === 0x7b || c === 0x7d || c === 0x5b || c === 0x5d || c === 0x0a) {
            this.state = Lx.Start;
            i--;
          }
          continue;
      }
      const now = this.state as Lx;
      if (now !== Lx.Start && now !== Lx.Recovery && this.partial.length + (i + 1 - start) > this.maxTokenSize) {
        // One token may not grow without bound either: drop it and report, as QEMU does.
        this.partial = '';
        this.state = Lx.Start;
        start = i + 1;
        this.fail('JSON token size limit exceeded');
      }
    }
    if (this.state !== Lx.Start && this.state !== Lx.Recovery) {
      this.partial += chunk.slice(start);
    }
  }

  private finish(type: Tok, chunk: string, start: number, end: number): void {
    const text = this.partial + chunk.slice(start, end);
    this.partial = '';
    this.state = Lx.Start;
    this.token(type, text);
  }

  private lexError(chunk: string, start: number, index: number): void {
    const text = this.partial + chunk.slice(start, index + 1);
    this.partial = '';
    this.state = Lx.Recovery;
    this.fail(`JSON parse error, stray '${text}'`);
  }

  private token(type: Tok, text: string): void {
    switch (type) {
      case Tok.LCurly:
        this.braces++;
        break;
      case Tok.RCurly:
        this.braces--;
        break;
      case Tok.LSquare:
        this.brackets++;
        break;
      case Tok.RSquare:
        this.brackets--;
        break;
      default:
        break;
    }
    if (this.tokenSize + text.length + 1 > this.maxTokenSize) {
      this.fail('JSON token size limit exceeded');
      return;
    }
    if (this.tokens.length + 1 > this.maxTokenCount) {
      this.fail('JSON token count limit exceeded');
      return;
    }
    if (this.braces + this.brackets > this.maxNesting) {
      this.fail('JSON nesting depth limit exceeded');
      return;
    }
    this.tokens.push({ type, text });
    this.tokenSize += text.length;
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;
    const tokens = this.tokens;
    this.reset();
    const parser = new TokenParser(tokens);
    let value: JsonValue | undefined;
    try {
      value = parser.parse();
    } catch (error) {
      if (!(error instanceof JsonSyntaxError)) throw error;
      this.emit(undefined, `JSON parse error, ${error.message}`);
      return;
    }
    this.emit(value, undefined);
  }

  private reset(): void {
    this.tokens = [];
    this.braces = 0;
    this.brackets = 0;
    this.tokenSize = 0;
  }

  private fail(message: string): void {
    this.reset();
    this.emit(undefined, message);
  }
}

class JsonSyntaxError extends Error {
  override readonly name = 'JsonSyntaxError';
}

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

/** Recursive descent over one message's tokens; depth is bounded by the streamer's nesting limit. */
class TokenParser {
  private pos = 0;

  constructor(private readonly tokens: readonly Token[]) {}

  parse(): JsonValue {
    const value = this.value();
    if (value === undefined) throw new JsonSyntaxError('expecting value');
    return value;
  }

  private next(): Token | undefined {
    return this.tokens[this.pos++];
  }

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private value(): JsonValue | undefined {
    const token = this.next();
    if (token === undefined) return undefined;
    switch (token.type) {
      case Tok.LCurly:
        return this.object();
      case Tok.LSquare:
        return this.array();
      case Tok.String:
        return decodeString(token.text);
      case Tok.Integer:
        return parseInteger(token.text);
      case Tok.Float:
        return Number(token.text);
      case Tok.Keyword:
        if (token.text === 'true') return true;
        if (token.text === 'false') return false;
        if (token.text === 'null') return null;
        throw new JsonSyntaxError(`invalid keyword '${token.text}'`);
      default:
        return undefined;
    }
  }

  private object(): JsonObject {
    const out: JsonObject = {};
    if (this.peek()?.type === Tok.RCurly) {
      this.pos++;
      return out;
    }
    for (;;) {
      const key = this.value();
      if (key === undefined) throw new JsonSyntaxError('expecting value');
      if (typeof key !== 'string') throw new JsonSyntaxError('key is not a string in object');
      if (this.next()?.type !== Tok.Colon) throw new JsonSyntaxError('missing : in object pair');
      const value = this.value();
      if (value === undefined) throw new JsonSyntaxError('expecting value');
      if (Object.prototype.hasOwnProperty.call(out, key)) throw new JsonSyntaxError('duplicate key');
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      const sep = this.next();
      if (sep?.type === Tok.RCurly) return out;
      if (sep?.type !== Tok.Comma) throw new JsonSyntaxError('expected separator in dict');
    }
  }

  private array(): JsonValue[] {
    const out: JsonValue[] = [];
    if (this.peek()?.type === Tok.RSquare) {
      this.pos++;
      return out;
    }
    for (;;) {
      const value = this.value();
      if (value === undefined) throw new JsonSyntaxError('expecting value');
      out.push(value);
      const sep = this.next();
      if (sep?.type === Tok.RSquare) return out;
      if (sep?.type !== Tok.Comma) throw new JsonSyntaxError('expected separator in list');
    }
  }
}

function parseInteger(text: string): number | bigint {
  const n = Number(text);
  if (Number.isSafeInteger(n)) return n === 0 ? 0 : n;
  const big = BigInt(text);
  if (big >= INT64_MIN && big <= UINT64_MAX) return big;
  return n;
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = { '"': '"', "'": "'", '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

function decodeString(text: string): string {
  const body = text.slice(1, -1);
  if (body.indexOf('\\') < 0) return body;
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const esc = body[++i] ?? '';
    if (esc !== 'u') {
      const simple = SIMPLE_ESCAPES[esc];
      if (simple === undefined) throw new JsonSyntaxError('invalid escape sequence in string');
      out += simple;
      continue;
    }
    const hex = body.slice(i + 1, i + 5);
    const unit = parseInt(hex, 16);
    i += 4;
    if (unit >= 0xd800 && unit <= 0xdbff && body[i + 1] === '\\' && body[i + 2] === 'u') {
      const low = parseInt(body.slice(i + 3, i + 7), 16);
      if (low >= 0xdc00 && low <= 0xdfff) {
        out += String.fromCharCode(unit, low);
        i += 6;
        continue;
      }
    }
    if (unit >= 0xd800 && unit <= 0xdfff) throw new JsonSyntaxError(`\\u${hex} is not a valid Unicode character`);
    out += String.fromCharCode(unit);
  }
  return out;
}
