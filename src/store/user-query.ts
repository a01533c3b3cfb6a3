import { type RawBuilder, type SqlBool, sql } from 'kysely';
import { AppError } from '../errors.js';
import { compileRe2 } from '../lib/re2.js';
import type { Dialect } from './database.js';
import type { UserFilter } from './users-repo.js';

/**
 * Compiles the MongoDB-style filter of `GET /admin/clients?q=` into a Kysely where-expression on `users`.
 *
 * Every input either compiles to SQL that runs on both dialects or throws AppError('INVALID_QUERY'); the SQL only
 * ever carries user values as bound parameters (field names are checked against a strict pattern first).
 *
 * Semantics follow MongoDB for scalar values: comparisons are type-strict ("30" never equals 30), `$ne`/`$nin`
 * also match rows where the field is missing, `{f: null}` matches missing or null. Custom fields live in the
 * `extra` JSON; arrays and embedded documents there are only reachable through `$exists` and `$type`.
 *
 * `$regex` takes JavaScript syntax without the constructs a linear-time engine cannot run (backreferences and
 * lookarounds). It is translated twice: into RE2 syntax, which SQLite runs with re2js (`imkit_regexp`, see
 * store/database.ts), and into an equivalent Postgres ARE. A pattern from one tenant runs inside the one server
 * process (SQLite) or the shared database, so it must not be able to take exponential time: RE2 matches in time
 * linear in the text, and Postgres' engine, given no backreferences, runs as an automaton too (and is cut by the
 * statement timeout). The RE2 form is compiled on both dialects, so Postgres only ever runs patterns RE2 accepts.
 * Constructs that cannot be translated faithfully, and counts above 255, are refused.
 */
export function compileUserQuery(q: unknown, dialect: Dialect): UserFilter {
  const expr = new Compiler(dialect).filter(q, 1, 'q');
  return () => expr;
}

export const USER_QUERY_LIMITS = {
  /** Levels of $and/$or/$nor nesting, the top level being 1. */
  maxDepth: 8,
  /** Field conditions (each operator counts one), over the whole query. */
  maxConditions: 100,
  /** Sub-filters of $and/$or/$nor, over the whole query. */
  maxSubFilters: 100,
  /** Elements of one $in/$nin array. */
  maxInValues: 1000,
  /** Elements of all $in/$nin arrays together (keeps the bound parameters far below both databases' limits). */
  maxTotalValues: 5000,
  /** Characters of a $regex pattern. */
  maxRegexLength: 512,
  /** Size of a $regex once counted repetitions are expanded (both engines compile those by copying). */
  maxRegexWeight: 4000,
  /** Largest {n,m} count in a $regex (Postgres' own limit). */
  maxRegexCount: 255,
} as const;

type Pred = RawBuilder<SqlBool>;
type Scalar = string | number | boolean | null;

const TRUE: Pred = sql<SqlBool>`1 = 1`;
const FALSE: Pred = sql<SqlBool>`1 = 0`;

function fail(message: string): never {
  throw new AppError('INVALID_QUERY', `Invalid query: ${message}`);
}

/** A name as it may appear in a message: quoted, and cut short so a hostile key cannot flood the log. */
function show(name: string): string {
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

// --- fields

type ColumnKind = 'text' | 'time' | 'bool';
type UserColumn = 'id' | 'nickname' | 'avatar_url' | 'description' | 'is_robot' | 'user_agent' | 'last_login_at' | 'created_at' | 'updated_at';

interface ColumnTarget {
  kind: ColumnKind;
  column: UserColumn;
  name: string;
}
interface CustomTarget {
  kind: 'custom';
  key: string;
  name: string;
}
type Target = ColumnTarget | CustomTarget;

const COLUMNS = new Map<string, [ColumnKind, UserColumn]>([
  ['_id', ['text', 'id']],
  ['id', ['text', 'id']],
  ['nickname', ['text', 'nickname']],
  ['avatarUrl', ['text', 'avatar_url']],
  ['description', ['text', 'description']],
  ['isRobot', ['bool', 'is_robot']],
  ['userAgent', ['text', 'user_agent']],
  ['lastLoginTime', ['time', 'last_login_at']],
  ['lastLoginTimeMS', ['time', 'last_login_at']],
  ['createdAt', ['time', 'created_at']],
  ['createdAtMS', ['time', 'created_at']],
  ['updatedAt', ['time', 'updated_at']],
  ['updatedAtMS', ['time', 'updated_at']],
]);

const CUSTOM_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

function target(name: string): Target {
  const col = COLUMNS.get(name);
  if (col) return { kind: col[0], column: col[1], name };
  if (CUSTOM_NAME.test(name)) return { kind: 'custom', key: name, name };
  fail(
    `unsupported field name ${show(name)}: use a user field or a custom field name of letters, digits and _ (starting with a letter, at most 64 characters)`,
  );
}

// --- operators

type RangeOp = '$gt' | '$gte' | '$lt' | '$lte';
const RANGE_SQL: Record<RangeOp, string> = { $gt: '>', $gte: '>=', $lt: '<', $lte: '<=' };
const FIELD_OPERATORS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$regex', '$options', '$type', '$not']);

/** Mongo type names -> SQLite json_type / Postgres jsonb_typeof results. */
const TYPES = new Map<string, { sqlite: string[]; postgres: string; canonical: string }>([
  ['string', { sqlite: ['text'], postgres: 'string', canonical: 'string' }],
  ['number', { sqlite: ['integer', 'real'], postgres: 'number', canonical: 'number' }],
  ['bool', { sqlite: ['true', 'false'], postgres: 'boolean', canonical: 'bool' }],
  ['boolean', { sqlite: ['true', 'false'], postgres: 'boolean', canonical: 'bool' }],
  ['null', { sqlite: ['null'], postgres: 'null', canonical: 'null' }],
  ['object', { sqlite: ['object'], postgres: 'object', canonical: 'object' }],
  ['array', { sqlite: ['array'], postgres: 'array', canonical: 'array' }],
]);

/** The one type a non-null value of a column has, in $type's words. */
const COLUMN_TYPE: Record<ColumnKind, string> = { text: 'string', time: 'number', bool: 'bool' };

function not(p: Pred): Pred {
  // Leaf predicates may be NULL (a missing field); "is not true" makes the negation two-valued, so that
  // $ne/$nin/$nor/$not match rows where the field is missing, as in MongoDB.
  return sql<SqlBool>`(${p}) is not true`;
}

function and(parts: Pred[]): Pred {
  if (parts.length === 0) return TRUE;
  if (parts.length === 1) return parts[0]!;
  return sql<SqlBool>`(${sql.join(parts, sql` and `)})`;
}

function or(parts: Pred[]): Pred {
  if (parts.length === 0) return FALSE;
  if (parts.length === 1) return parts[0]!;
  return sql<SqlBool>`(${sql.join(parts, sql` or `)})`;
}

function lits(values: readonly string[]): RawBuilder<unknown> {
  return sql.join(values.map((v) => sql.lit(v)));
}

class Compiler {
  private conditions = 0;
  private subFilters = 0;
  private values = 0;

  constructor(private readonly dialect: Dialect) {}

  private count(): void {
    if (++this.conditions > USER_QUERY_LIMITS.maxConditions) {
      fail(`more than ${USER_QUERY_LIMITS.maxConditions} conditions`);
    }
  }

  filter(q: unknown, depth: number, where: string): Pred {
    if (!isPlainObject(q)) fail(`${where} must be a JSON object (a MongoDB-style filter)`);
    if (depth > USER_QUERY_LIMITS.maxDepth) fail(`$and/$or/$nor nested more than ${USER_QUERY_LIMITS.maxDepth} levels deep`);
    const parts: Pred[] = [];
    for (const key of Object.keys(q)) {
      const value = q[key];
      if (key === '$and' || key === '$or' || key === '$nor') {
        if (!Array.isArray(value) || value.length === 0) fail(`${key} must be a non-empty array of filters`);
        const subs: Pred[] = [];
        for (let i = 0; i < value.length; i++) {
          if (++this.subFilters > USER_QUERY_LIMITS.maxSubFilters) fail(`more than ${USER_QUERY_LIMITS.maxSubFilters} sub-filters in $and/$or/$nor`);
          subs.push(this.filter(value[i], depth + 1, `${key}[${i}]`));
        }
        parts.push(key === '$and' ? and(subs) : key === '$or' ? or(subs) : not(or(subs)));
      } else if (key.startsWith('$')) {
        fail(`unknown operator ${show(key)}; at the top level only $and, $or and $nor are supported`);
      } else {
        parts.push(this.field(target(key), value));
      }
    }
    return and(parts);
  }

  private field(t: Target, cond: unknown): Pred {
    if (isPlainObject(cond)) {
      const keys = Object.keys(cond);
      const ops = keys.filter((k) => k.startsWith('$'));
      if (ops.length === 0) {
        fail(`field ${show(t.name)}: embedded documents are not supported; compare with a value or use operators such as {"$eq": ...}`);
      }
      if (ops.length !== keys.length) fail(`field ${show(t.name)}: do not mix operators and plain keys in one condition`);
      return this.operators(t, cond);
    }
    if (Array.isArray(cond)) fail(`field ${show(t.name)}: arrays are not supported as values; use {"$in": [...]}`);
    this.count();
    return this.eq(t, this.scalar(t, '$eq', cond));
  }

  private operators(t: Target, cond: Record<string, unknown>): Pred {
    const parts: Pred[] = [];
    const hasOptions = Object.hasOwn(cond, '$options');
    if (hasOptions && !Object.hasOwn(cond, '$regex')) fail(`field ${show(t.name)}: $options needs $regex`);
    for (const op of Object.keys(cond)) {
      const v = cond[op];
      if (!FIELD_OPERATORS.has(op)) fail(`field ${show(t.name)}: unknown operator ${show(op)}`);
      if (op === '$options') continue;
      this.count();
      switch (op) {
        case '$eq':
          parts.push(this.eq(t, this.scalar(t, op, v)));
          break;
        case '$ne':
          parts.push(not(this.eq(t, this.scalar(t, op, v), op)));
          break;
        case '$gt':
        case '$gte':
        case '$lt':
        case '$lte':
          parts.push(this.range(t, op, this.scalar(t, op, v)));
          break;
        case '$in':
          parts.push(this.in(t, op, v));
          break;
        case '$nin':
          parts.push(not(this.in(t, op, v)));
          break;
        case '$exists':
          parts.push(this.exists(t, v));
          break;
        case '$type':
          parts.push(this.type(t, v));
          break;
        case '$regex':
          parts.push(this.regex(t, v, hasOptions ? cond.$options : ''));
          break;
        case '$not': {
          if (!isPlainObject(v) || Object.keys(v).length === 0 || !Object.keys(v).every((k) => k.startsWith('$'))) {
            fail(`field ${show(t.name)}: $not needs an object of operators, such as {"$regex": "..."}`);
          }
          parts.push(not(this.operators(t, v)));
          break;
        }
      }
    }
    return and(parts);
  }

  // --- values

  private scalar(t: Target, op: string, v: unknown): Scalar {
    if (v === null || typeof v === 'boolean') return v;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) fail(`field ${show(t.name)}: ${op} needs a finite number`);
      return v;
    }
    if (typeof v === 'string') {
      checkText(v, `field ${show(t.name)}: ${op} value`);
      return v;
    }
    fail(`field ${show(t.name)}: ${op} needs a string, number, boolean or null`);
  }

  /** A value as the column stores it; null stays null. */
  private columnValue(t: ColumnTarget, op: string, v: Scalar): string | number | null {
    if (v === null) return null;
    switch (t.kind) {
      case 'text':
        if (typeof v !== 'string') fail(`field ${show(t.name)}: ${op} needs a string`);
        return v;
      case 'bool':
        if (typeof v !== 'boolean') fail(`field ${show(t.name)}: ${op} needs true or false`);
        return v ? 1 : 0;
      case 'time':
        if (typeof v === 'number') {
          if (!Number.isSafeInteger(v)) fail(`field ${show(t.name)}: ${op} needs epoch milliseconds (an integer) or an ISO-8601 date`);
          return v;
        }
        if (typeof v === 'string') return parseDate(v) ?? fail(`field ${show(t.name)}: ${op} has an unparsable date ${show(v)}`);
        fail(`field ${show(t.name)}: ${op} needs epoch milliseconds or an ISO-8601 date`);
    }
  }

  // --- SQL pieces for custom fields

  private path(key: string): RawBuilder<unknown> {
    return sql.lit(`$."${key}"`); // key matched CUSTOM_NAME: no quote or backslash can occur
  }
  /** SQLite json_type of the field: NULL when missing, 'null' for JSON null. */
  private sqliteType(key: string): RawBuilder<unknown> {
    return sql`json_type(${sql.ref('extra')}, ${this.path(key)})`;
  }
  private sqliteValue(key: string): RawBuilder<unknown> {
    return sql`json_extract(${sql.ref('extra')}, ${this.path(key)})`;
  }
  /** Postgres jsonb value of the field: SQL NULL when missing, jsonb 'null' for JSON null. */
  private pgJson(key: string): RawBuilder<unknown> {
    return sql`(${sql.ref('extra')}::jsonb -> ${sql.lit(key)})`;
  }
  private pgText(key: string): RawBuilder<unknown> {
    return sql`(${sql.ref('extra')}::jsonb ->> ${sql.lit(key)})`;
  }
  private pgType(key: string): RawBuilder<unknown> {
    return sql`jsonb_typeof(${this.pgJson(key)})`;
  }
  /** The custom field holds a JSON string (or number): the guard of every typed comparison, as in MongoDB. */
  private customIs(key: string, type: 'string' | 'number'): Pred {
    if (this.dialect === 'postgres') return sql<SqlBool>`${this.pgType(key)} = ${sql.lit(type)}`;
    return type === 'string'
      ? sql<SqlBool>`${this.sqliteType(key)} = 'text'`
      : sql<SqlBool>`${this.sqliteType(key)} in ('integer', 'real')`;
  }
  private customIsNull(key: string): Pred {
    const type = this.dialect === 'postgres' ? this.pgType(key) : this.sqliteType(key);
    return sql<SqlBool>`coalesce(${type}, 'null') = 'null'`;
  }

  // --- predicates

  private eq(t: Target, v: Scalar, op = '$eq'): Pred {
    if (t.kind !== 'custom') {
      const value = this.columnValue(t, op, v);
      return value === null ? sql<SqlBool>`${sql.ref(t.column)} is null` : sql<SqlBool>`${sql.ref(t.column)} = ${value}`;
    }
    if (v === null) return this.customIsNull(t.key);
    if (this.dialect === 'postgres') return sql<SqlBool>`${this.pgJson(t.key)} = ${JSON.stringify(v)}::jsonb`;
    if (typeof v === 'boolean') return sql<SqlBool>`${this.sqliteType(t.key)} = ${sql.lit(String(v))}`;
    return and([this.customIs(t.key, typeof v === 'string' ? 'string' : 'number'), sql<SqlBool>`${this.sqliteValue(t.key)} = ${v}`]);
  }

  private range(t: Target, op: RangeOp, v: Scalar): Pred {
    const cmp = sql.raw(RANGE_SQL[op]);
    if (t.kind === 'bool') fail(`field ${show(t.name)}: ${op} is not supported on a boolean field`);
    if (typeof v !== 'string' && typeof v !== 'number') fail(`field ${show(t.name)}: ${op} needs a string or a number`);
    if (t.kind !== 'custom') {
      const value = this.columnValue(t, op, v);
      // Postgres compares text by the database collation; "C" gives the byte order SQLite uses.
      const col = t.kind === 'text' && this.dialect === 'postgres' ? sql`${sql.ref(t.column)} collate "C"` : sql.ref(t.column);
      return sql<SqlBool>`${col} ${cmp} ${value}`;
    }
    if (this.dialect === 'postgres') {
      return typeof v === 'string'
        ? and([this.customIs(t.key, 'string'), sql<SqlBool>`${this.pgText(t.key)} collate "C" ${cmp} ${v}`])
        : and([this.customIs(t.key, 'number'), sql<SqlBool>`${this.pgJson(t.key)} ${cmp} ${JSON.stringify(v)}::jsonb`]);
    }
    return and([this.customIs(t.key, typeof v === 'string' ? 'string' : 'number'), sql<SqlBool>`${this.sqliteValue(t.key)} ${cmp} ${v}`]);
  }

  private in(t: Target, op: '$in' | '$nin', list: unknown): Pred {
    if (!Array.isArray(list)) fail(`field ${show(t.name)}: ${op} needs an array`);
    if (list.length > USER_QUERY_LIMITS.maxInValues) fail(`field ${show(t.name)}: ${op} may list at most ${USER_QUERY_LIMITS.maxInValues} values`);
    this.values += list.length;
    if (this.values > USER_QUERY_LIMITS.maxTotalValues) fail(`more than ${USER_QUERY_LIMITS.maxTotalValues} $in/$nin values in all`);
    const values = list.map((v) => this.scalar(t, `${op} element`, v));
    const hasNull = values.includes(null);
    const present = values.filter((v): v is string | number | boolean => v !== null);
    const parts: Pred[] = [];
    if (t.kind !== 'custom') {
      const cols = present.map((v) => this.columnValue(t, `${op} element`, v)!);
      if (cols.length) parts.push(sql<SqlBool>`${sql.ref(t.column)} in (${sql.join(cols)})`);
      if (hasNull) parts.push(sql<SqlBool>`${sql.ref(t.column)} is null`);
      return or(parts);
    }
    if (hasNull) parts.push(this.customIsNull(t.key));
    if (this.dialect === 'postgres') {
      if (present.length) parts.push(sql<SqlBool>`${this.pgJson(t.key)} in (${sql.join(present.map((v) => sql`${JSON.stringify(v)}::jsonb`))})`);
      return or(parts);
    }
    const strings = present.filter((v) => typeof v === 'string');
    const numbers = present.filter((v) => typeof v === 'number');
    const bools = [...new Set(present.filter((v) => typeof v === 'boolean').map(String))];
    if (strings.length) parts.push(and([this.customIs(t.key, 'string'), sql<SqlBool>`${this.sqliteValue(t.key)} in (${sql.join(strings)})`]));
    if (numbers.length) parts.push(and([this.customIs(t.key, 'number'), sql<SqlBool>`${this.sqliteValue(t.key)} in (${sql.join(numbers)})`]));
    if (bools.length) parts.push(sql<SqlBool>`${this.sqliteType(t.key)} in (${lits(bools)})`);
    return or(parts);
  }

  private exists(t: Target, v: unknown): Pred {
    if (typeof v !== 'boolean' && v !== 0 && v !== 1) fail(`field ${show(t.name)}: $exists needs true or false`);
    const want = Boolean(v);
    if (t.kind !== 'custom') return want ? sql<SqlBool>`${sql.ref(t.column)} is not null` : sql<SqlBool>`${sql.ref(t.column)} is null`;
    if (this.dialect === 'postgres') {
      const has = sql<SqlBool>`(${sql.ref('extra')}::jsonb ? ${sql.lit(t.key)})`;
      return want ? has : sql<SqlBool>`not ${has}`;
    }
    return want ? sql<SqlBool>`${this.sqliteType(t.key)} is not null` : sql<SqlBool>`${this.sqliteType(t.key)} is null`;
  }

  private type(t: Target, v: unknown): Pred {
    const names = Array.isArray(v) ? v : [v];
    if (names.length === 0 || names.length > TYPES.size) fail(`field ${show(t.name)}: $type needs a type name or a short non-empty array of them`);
    const types = names.map((n) => {
      const type = typeof n === 'string' ? TYPES.get(n) : undefined;
      if (!type) fail(`field ${show(t.name)}: $type must be one of ${[...TYPES.keys()].join(', ')}`);
      return type;
    });
    if (t.kind !== 'custom') {
      const canon = new Set(types.map((x) => x.canonical));
      const parts: Pred[] = [];
      if (canon.has(COLUMN_TYPE[t.kind])) parts.push(sql<SqlBool>`${sql.ref(t.column)} is not null`);
      if (canon.has('null')) parts.push(sql<SqlBool>`${sql.ref(t.column)} is null`);
      return or(parts);
    }
    if (this.dialect === 'postgres') return sql<SqlBool>`${this.pgType(t.key)} in (${lits([...new Set(types.map((x) => x.postgres))])})`;
    return sql<SqlBool>`${this.sqliteType(t.key)} in (${lits([...new Set(types.flatMap((x) => x.sqlite))])})`;
  }

  private regex(t: Target, pattern: unknown, options: unknown): Pred {
    const where = `field ${show(t.name)}`;
    if (typeof pattern !== 'string') fail(`${where}: $regex needs a string pattern`);
    if (pattern.length > USER_QUERY_LIMITS.maxRegexLength) fail(`${where}: $regex pattern longer than ${USER_QUERY_LIMITS.maxRegexLength} characters`);
    checkText(pattern, `${where}: $regex pattern`);
    if (typeof options !== 'string' || !/^[ims]*$/.test(options) || new Set(options).size !== options.length) {
      fail(`${where}: $options may only hold the flags i, m and s, each at most once`);
    }
    const flags = [...options].sort().join('');
    try {
      new RegExp(pattern, flags);
    } catch (err) {
      fail(`${where}: invalid $regex: ${(err as Error).message}`);
    }
    const translated = translateRegex(pattern, flags, where);
    const caseInsensitive = flags.includes('i');
    try {
      // What SQLite runs; compiled on Postgres too, so that both dialects take exactly the patterns RE2 takes.
      compileRe2(translated.re2, caseInsensitive ? 'i' : '');
    } catch (err) {
      fail(`${where}: $regex ${show(pattern)} is not supported by the linear-time engine (${(err as Error).message})`);
    }
    if (t.kind !== 'custom' && t.kind !== 'text') fail(`${where}: $regex only applies to text fields`);
    if (this.dialect === 'postgres') {
      const op = sql.raw(caseInsensitive ? '~*' : '~');
      if (t.kind !== 'custom') return sql<SqlBool>`${sql.ref(t.column)} ${op} ${translated.pg}`;
      return and([this.customIs(t.key, 'string'), sql<SqlBool>`${this.pgText(t.key)} ${op} ${translated.pg}`]);
    }
    const call = (value: RawBuilder<unknown>) => sql<SqlBool>`imkit_regexp(${translated.re2}, ${caseInsensitive ? 'i' : ''}, ${value}) = 1`;
    if (t.kind !== 'custom') return call(sql.ref(t.column));
    return and([this.customIs(t.key, 'string'), call(this.sqliteValue(t.key))]);
  }
}

/** Text Postgres can store: no NUL and no unpaired surrogate. */
function checkText(s: string, what: string): void {
  if (s.includes('\u0000')) fail(`${what} contains a NUL character`);
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)) fail(`${what} contains an unpaired surrogate`);
}

const ISO_DATE = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

/** Epoch ms of an ISO-8601 date; a date and time without a zone is UTC. Undefined when unparsable. */
function parseDate(s: string): number | undefined {
  const m = ISO_DATE.exec(s);
  if (!m) return undefined;
  const [, date, time, fraction, zone] = m;
  let iso = date!;
  if (time) {
    iso += `T${time.length === 5 ? `${time}:00` : time}`;
    if (fraction) iso += `.${fraction.slice(0, 3).padEnd(3, '0')}`;
    if (!zone || zone.toUpperCase() === 'Z') iso += 'Z';
    else iso += zone.length === 3 ? `${zone}:00` : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone;
  }
  const ms = Date.parse(iso);
  if (!Number.isSafeInteger(ms)) return undefined;
  // Date.parse rolls some impossible days over (Feb 31 -> Mar 3); refuse those.
  const [y, mo, d] = date!.split('-').map(Number);
  const day = new Date(0);
  day.setUTCFullYear(y!, mo! - 1, d!);
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo! - 1 || day.getUTCDate() !== d) return undefined;
  return ms;
}

// --- $regex: JavaScript syntax -> a Postgres ARE and the same pattern in RE2 syntax

/** Sorted, disjoint, inclusive code-point intervals. */
type Ranges = Array<[number, number]>;

const MAX_CODE_POINT = 0x10ffff;
const DIGIT: Ranges = [[0x30, 0x39]];
const WORD: Ranges = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
const SPACE: Ranges = [
  [0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a],
  [0x2028, 0x2029], [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff],
];
const LINE_TERMINATORS: Ranges = [[0x0a, 0x0a], [0x0d, 0x0d], [0x2028, 0x2029]];
const NEWLINE: Ranges = [[0x0a, 0x0a]];

function normalize(r: Ranges): Ranges {
  const sorted = [...r].sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else out.push([lo, hi]);
  }
  return out;
}

function complement(r: Ranges): Ranges {
  const out: Ranges = [];
  let next = 0;
  for (const [lo, hi] of normalize(r)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

function intersect(a: Ranges, b: Ranges): Ranges {
  return complement([...complement(a), ...complement(b)]);
}

const isAsciiAlnum = (code: number) => (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);

/** One character in a Postgres ARE, inside or outside brackets: ASCII letters and digits as they are, all else escaped. */
function pgChar(code: number): string {
  if (isAsciiAlnum(code)) return String.fromCharCode(code);
  return code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\U${code.toString(16).padStart(8, '0')}`;
}

/** One character in RE2 syntax, inside or outside brackets. */
function re2Char(code: number): string {
  return isAsciiAlnum(code) ? String.fromCharCode(code) : `\\x{${code.toString(16)}}`;
}

function pgClass(r: Ranges, negated: boolean): string {
  const body = normalize(r)
    .map(([lo, hi]) => (lo === hi ? pgChar(lo) : hi === lo + 1 ? pgChar(lo) + pgChar(hi) : `${pgChar(lo)}-${pgChar(hi)}`))
    .join('');
  return `[${negated ? '^' : ''}${body}]`;
}

/** The items of an RE2 bracket expression for these code points (without the brackets). */
function re2Items(r: Ranges): string {
  return normalize(r)
    .map(([lo, hi]) => (lo === hi ? re2Char(lo) : `${re2Char(lo)}-${re2Char(hi)}`))
    .join('');
}

/**
 * The class escapes, with their RE2 form inside brackets. RE2's \d and \w are JavaScript's (ASCII), and RE2 folds
 * case over \W the way JavaScript's u flag does (the Kelvin sign and the long s count as word characters under i),
 * so they stay escapes; RE2's \s is narrower than JavaScript's, so \s and \S are spelled out (spaces have no case,
 * so the spelled-out sets fold the same).
 */
const CLASS_ESCAPES = new Map<string, { set: Ranges; negated: boolean; re2: string }>([
  ['d', { set: DIGIT, negated: false, re2: '\\d' }],
  ['D', { set: DIGIT, negated: true, re2: '\\D' }],
  ['w', { set: WORD, negated: false, re2: '\\w' }],
  ['W', { set: WORD, negated: true, re2: '\\W' }],
  ['s', { set: SPACE, negated: false, re2: re2Items(SPACE) }],
  ['S', { set: SPACE, negated: true, re2: re2Items(complement(SPACE)) }],
]);

const SIMPLE_ESCAPES = new Map<string, number>([['t', 0x09], ['n', 0x0a], ['v', 0x0b], ['f', 0x0c], ['r', 0x0d], ['-', 0x2d]]);

const PG_WORD = pgClass(WORD, false);
// Postgres' \y and \Y count non-ASCII letters as word characters; JavaScript's \b and \B do not.
const PG_WORD_BOUNDARY = `(?:(?<=${PG_WORD})(?!${PG_WORD})|(?<!${PG_WORD})(?=${PG_WORD}))`;
const PG_NOT_WORD_BOUNDARY = `(?:(?<=${PG_WORD})(?=${PG_WORD})|(?<!${PG_WORD})(?!${PG_WORD}))`;
const PG_NOT_LINE_TERMINATOR = pgClass(LINE_TERMINATORS, true);
const RE2_NOT_LINE_TERMINATOR = `[^${re2Items(LINE_TERMINATORS)}]`;
// With the m flag, ^ and $ match at a \n (as MongoDB's PCRE does, and as RE2 can): RE2 knows no other line end.
const PG_LINE_START = `(?<!${pgClass(NEWLINE, true)})`;
const PG_LINE_END = `(?!${pgClass(NEWLINE, true)})`;

interface Atom {
  weight: number;
  /** A quantifier may follow (not after an anchor). */
  repeatable: boolean;
}

interface Frame {
  weight: number;
  last: Atom | null;
}

type ClassItem = { code: number } | { set: Ranges; negated: boolean; re2: string };

/**
 * Translates a pattern that `new RegExp(pattern, flags)` accepted (flags among i, m, s) into
 *  - `pg`, a Postgres ARE matching the same strings, and
 *  - `re2`, the same pattern in RE2 syntax (run by SQLite's imkit_regexp, case-insensitive when flags has i),
 * so that both dialects match by code points (an emoji is one character, as in MongoDB) and accept or refuse the
 * same patterns. Fails with INVALID_QUERY naming any construct it does not take.
 */
function translateRegex(src: string, flags: string, where: string): { pg: string; re2: string } {
  const dotAll = flags.includes('s');
  const multiline = flags.includes('m');
  const bad: (what: string) => never = (what) => fail(`${where}: $regex ${what} is not supported`);

  let pg = '';
  let re2 = '';
  let i = 0;
  const stack: Frame[] = [{ weight: 0, last: null }];
  const top = () => stack[stack.length - 1]!;
  const atom = (pgText: string, re2Text: string, repeatable = true) => {
    pg += pgText;
    re2 += re2Text;
    const f = top();
    f.weight += 1;
    f.last = { weight: 1, repeatable };
  };
  /** The code point at i, consumed. */
  const nextCodePoint = () => {
    const code = src.codePointAt(i)!;
    i += code > 0xffff ? 2 : 1;
    return code;
  };
  const hex = (n: number) => {
    const h = src.slice(i, i + n);
    if (h.length !== n || !/^[0-9A-Fa-f]+$/.test(h)) return undefined;
    i += n;
    return parseInt(h, 16);
  };

  /** Reads the escape whose backslash was just consumed. */
  const escape = (inClass: boolean): ClassItem | { assertion: 'b' | 'B' } => {
    if (i >= src.length) bad('trailing backslash');
    const c = src[i]!;
    const classEscape = CLASS_ESCAPES.get(c);
    if (classEscape) {
      i++;
      return classEscape;
    }
    const simple = SIMPLE_ESCAPES.get(c);
    if (simple !== undefined) {
      i++;
      return { code: simple };
    }
    i++;
    switch (c) {
      case 'b':
        return inClass ? { code: 0x08 } : { assertion: 'b' };
      case 'B':
        return inClass ? bad('escape \\B inside [...]') : { assertion: 'B' };
      case 'c': {
        const l = src[i];
        if (l && /[A-Za-z]/.test(l)) {
          i++;
          return { code: l.charCodeAt(0) % 32 };
        }
        return bad('escape \\c without a letter');
      }
      case 'x': {
        const code = hex(2);
        return code === undefined ? bad('escape \\x without two hex digits') : { code };
      }
      case 'u': {
        const code = hex(4);
        if (code === undefined) bad('escape \\u without four hex digits');
        if (code >= 0xd800 && code <= 0xdfff) bad('surrogate escape (write the character itself)');
        return { code };
      }
    }
    if (/[0-9]/.test(c)) bad(`escape \\${c} (backreferences and octal escapes)`);
    if (/[A-Za-z]/.test(c)) bad(`escape \\${c}`);
    i--;
    return { code: nextCodePoint() }; // an escaped punctuation or other character stands for itself
  };

  const charClass = () => {
    // the '[' was just consumed
    const negated = src[i] === '^';
    if (negated) i++;
    const plain: Ranges = [];
    const negatedSets: Ranges[] = [];
    let re2Body = '';
    const item = (): ClassItem => {
      if (i >= src.length) bad('unterminated [...]');
      if (src[i] === '\\') {
        i++;
        const e = escape(true);
        if ('assertion' in e) return bad('assertion inside [...]');
        return e;
      }
      return { code: nextCodePoint() };
    };
    const add = (x: ClassItem) => {
      if ('code' in x) {
        if (x.code === 0) bad('NUL character');
        plain.push([x.code, x.code]);
        re2Body += re2Char(x.code);
      } else {
        if (x.negated) negatedSets.push(x.set);
        else plain.push(...x.set);
        re2Body += x.re2;
      }
    };
    while (src[i] !== ']') {
      const first = item();
      if (src[i] === '-' && i + 1 < src.length && src[i + 1] !== ']') {
        i++;
        const second = item();
        if ('code' in first && 'code' in second) {
          if (first.code === 0) bad('NUL character');
          if (first.code > second.code) bad('range out of order in [...]'); // surrogate pairs can reorder ranges
          plain.push([first.code, second.code]);
          re2Body += `${re2Char(first.code)}-${re2Char(second.code)}`;
          continue;
        }
        add(first); // [\d-z]: the dash stands for itself
        add({ code: 0x2d });
        add(second);
        continue;
      }
      add(first);
    }
    i++; // ']'
    // RE2 folds case over the class before negating it, as JavaScript does, so the class keeps its shape.
    const re2Text = negated && re2Body === '' ? '(?s:.)' : `[${negated ? '^' : ''}${re2Body}]`;
    if (negatedSets.length === 0) {
      if (plain.length === 0) return negated ? atom('.', re2Text) : bad('empty class [] (it never matches)');
      return atom(pgClass(plain, negated), re2Text);
    }
    // A class with \D, \W or \S is plain ∪ ¬N where N is the intersection of their positive sets. Postgres refuses
    // those escapes in brackets, and a computed complement would defeat case-insensitive matching, so spell it out.
    let n = negatedSets[0]!;
    for (const set of negatedSets.slice(1)) n = intersect(n, set);
    if (!negated) {
      if (n.length === 0) return atom('.', re2Text);
      return atom(plain.length ? `(?:${pgClass(plain, false)}|${pgClass(n, true)})` : pgClass(n, true), re2Text);
    }
    if (n.length === 0) bad('class that never matches');
    return atom(plain.length ? `(?:(?!${pgClass(plain, false)})${pgClass(n, false)})` : pgClass(n, false), re2Text);
  };

  const quantifier = (min: number, max: number, text: string) => {
    const f = top();
    const last = f.last;
    if (!last || !last.repeatable) bad(`quantifier ${text} after an anchor`);
    if (min > USER_QUERY_LIMITS.maxRegexCount || (Number.isFinite(max) && max > USER_QUERY_LIMITS.maxRegexCount)) {
      bad(`repetition count above ${USER_QUERY_LIMITS.maxRegexCount}`);
    }
    // No check for nested quantifiers or repeated alternations: neither engine backtracks (see compileUserQuery).
    if (src[i] === '?') {
      i++;
      text += '?';
    }
    pg += text;
    re2 += text;
    const times = Number.isFinite(max) ? Math.max(max, 1) : Math.max(min, 1);
    f.weight += last.weight * (times - 1);
    f.last = null;
  };

  while (i < src.length) {
    const c = src[i]!;
    switch (c) {
      case '\\': {
        i++;
        const e = escape(false);
        if ('assertion' in e) atom(e.assertion === 'b' ? PG_WORD_BOUNDARY : PG_NOT_WORD_BOUNDARY, `\\${e.assertion}`, false);
        else if ('code' in e) {
          if (e.code === 0) bad('NUL character');
          atom(pgChar(e.code), re2Char(e.code));
        } else atom(pgClass(e.set, e.negated), `[${e.re2}]`);
        break;
      }
      case '.':
        i++;
        atom(dotAll ? '.' : PG_NOT_LINE_TERMINATOR, dotAll ? '(?s:.)' : RE2_NOT_LINE_TERMINATOR);
        break;
      case '^':
        i++;
        atom(multiline ? PG_LINE_START : '^', multiline ? '(?m:^)' : '^', false);
        break;
      case '$':
        i++;
        atom(multiline ? PG_LINE_END : '$', multiline ? '(?m:$)' : '$', false);
        break;
      case '[':
        i++;
        charClass();
        break;
      case '(': {
        i++;
        let open = '(';
        if (src[i] === '?') {
          const head = src.slice(i, i + 3);
          if (head.startsWith('?:')) open = '(?:';
          else if (head.startsWith('?=') || head.startsWith('?!') || head === '?<=' || head === '?<!') {
            bad('lookahead or lookbehind ((?=, (?!, (?<=, (?<!): the linear-time engine has none');
          } else if (!head.startsWith('?<') || src.indexOf('>', i) < 0) bad('group syntax');
          // a named group is an ordinary group here (named backreferences are refused)
          i = open === '(' ? src.indexOf('>', i) + 1 : i + 2;
        }
        pg += open;
        re2 += open;
        stack.push({ weight: 0, last: null });
        break;
      }
      case ')': {
        i++;
        if (stack.length === 1) bad('unbalanced )');
        const f = stack.pop()!;
        pg += ')';
        re2 += ')';
        const parent = top();
        parent.weight += f.weight + 1;
        parent.last = { weight: f.weight + 1, repeatable: true };
        break;
      }
      case '|':
        i++;
        pg += '|';
        re2 += '|';
        top().last = null;
        break;
      case '*':
      case '+':
      case '?':
        i++;
        quantifier(c === '+' ? 1 : 0, c === '?' ? 1 : Infinity, c);
        break;
      case '{': {
        const braced = /\{(\d+)(?:(,)(\d*))?\}/y;
        braced.lastIndex = i;
        const m = braced.exec(src);
        if (!m) {
          i++;
          atom(pgChar(0x7b), re2Char(0x7b)); // not a quantifier: a literal brace
          break;
        }
        i += m[0].length;
        const min = Number(m[1]);
        const max = m[2] ? (m[3] ? Number(m[3]) : Infinity) : min;
        quantifier(min, max, m[0]);
        break;
      }
      default: {
        const code = nextCodePoint();
        atom(pgChar(code), re2Char(code));
      }
    }
  }
  if (stack.length !== 1) bad('unbalanced (');
  if (stack[0]!.weight > USER_QUERY_LIMITS.maxRegexWeight) {
    fail(`${where}: $regex too large once its repetitions are expanded (more than ${USER_QUERY_LIMITS.maxRegexWeight} elements)`);
  }
  return { pg, re2 };
}
