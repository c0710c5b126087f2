import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The product code's shape, as the style guide asks for it: no function longer than 80 lines, and no code nested
 * deeper than four levels inside a top-level declaration. A level is a control-flow statement (if, for, while, do,
 * switch, try) or a nested function; an `else if` continues its `if`.
 */
const maxLines = 80;
const maxDepth = 4;
const root = fileURLToPath(new URL('..', import.meta.url));
const productDirs = ['schemas', 'operators', 'pipeline'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

const isFunction = (node: ts.Node) =>
  ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isArrowFunction(node) || ts.isFunctionExpression(node) || ts.isConstructorDeclaration(node) || ts.isAccessor(node);
const isControl = (node: ts.Node) =>
  ts.isIfStatement(node) || ts.isForStatement(node) || ts.isForOfStatement(node) || ts.isForInStatement(node) || ts.isWhileStatement(node) || ts.isDoStatement(node) || ts.isTryStatement(node) || ts.isSwitchStatement(node);
const isElseIf = (node: ts.Node) => ts.isIfStatement(node) && ts.isIfStatement(node.parent) && node.parent.elseStatement === node;

function nameOf(node: ts.Node): string {
  const named = node as { name?: ts.Node };
  if (named.name) return named.name.getText();
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText();
  return 'an anonymous function';
}

/** Every function over `maxLines` lines and every spot nested deeper than `maxDepth`, as `file:line what`. */
function shapeProblems(file: string): string[] {
  return shapeProblemsOf(ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true), file);
}

function shapeProblemsOf(source: ts.SourceFile, file: string): string[] {
  const where = (node: ts.Node) => `${relative(root, file)}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const problems: string[] = [];
  // `depth` counts levels below the top-level declaration; -1 outside any function or class member.
  const visit = (node: ts.Node, depth: number) => {
    let inner = depth;
    if (isFunction(node)) {
      const lines = source.getLineAndCharacterOfPosition(node.getEnd()).line - source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      if (lines > maxLines) problems.push(`${where(node)} ${nameOf(node)} has ${lines} lines`);
      inner = depth + 1;
    } else if (isControl(node) && !isElseIf(node)) {
      inner = depth + 1;
    }
    if (inner > maxDepth && inner > depth) problems.push(`${where(node)} is nested ${inner} deep`);
    ts.forEachChild(node, (child) => visit(child, inner));
  };
  visit(source, -1);
  return problems;
}

describe('code shape', () => {
  it(`has no function over ${maxLines} lines and no nesting deeper than ${maxDepth} in ${productDirs.join(', ')}`, () => {
    const files = productDirs.flatMap((dir) => sourceFiles(join(root, dir)));
    expect(files.length).toBeGreaterThan(40);
    expect(files.flatMap(shapeProblems)).toEqual([]);
  });

  it('finds a long function and deep nesting when there is one', () => {
    const body = Array.from({ length: 85 }, (_, i) => `  const v${i} = ${i};`).join('\n');
    const nested = 'function deep(xs: number[][][]) {\n  for (const a of xs) {\n    for (const b of a) {\n      for (const c of b) {\n        if (c > 0) {\n          if (c > 1) console.log(c);\n        }\n      }\n    }\n  }\n}\n';
    const file = join(root, 'test', 'fixtures-shape.ts');
    const source = ts.createSourceFile(file, `function long() {\n${body}\n}\n${nested}`, ts.ScriptTarget.Latest, true);
    expect(source.statements).toHaveLength(2);
    expect(shapeProblemsOf(source, file)).toEqual([expect.stringMatching(/long has 87 lines/), expect.stringMatching(/is nested 5 deep/)]);
  });
});
