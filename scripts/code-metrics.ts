/**
 * Size and style figures of the code base, for the architecture issue's before/after note (issue 16): files over 300
 * lines, functions over 60 lines, one-letter parameters, doc-comment coverage of exported symbols, `as unknown as`
 * casts and lines over 120 characters. Read with the TypeScript compiler API, so a figure counts syntax, not text.
 *
 *   node dist/scripts/code-metrics.js [root]   (root: the checkout to measure, default the current directory)
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/** The folders measured, each on its own line of the report. */
const SCOPES = ['src', 'test', 'bench'] as const;
const LONG_FILE_LINES = 300;
const LONG_FUNCTION_LINES = 60;
const LONG_LINE_CHARS = 120;

interface Figures {
  files: number;
  lines: number;
  filesOver300: number;
  functions: number;
  functionsOver60: number;
  parameters: number;
  oneLetterParameters: number;
  exportedFunctionsAndClasses: number;
  documentedFunctionsAndClasses: number;
  exportedSymbols: number;
  documentedSymbols: number;
  asUnknownAs: number;
  linesOver120: number;
}

function emptyFigures(): Figures {
  return {
    files: 0,
    lines: 0,
    filesOver300: 0,
    functions: 0,
    functionsOver60: 0,
    parameters: 0,
    oneLetterParameters: 0,
    exportedFunctionsAndClasses: 0,
    documentedFunctionsAndClasses: 0,
    exportedSymbols: 0,
    documentedSymbols: 0,
    asUnknownAs: 0,
    linesOver120: 0,
  };
}

function typeScriptFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : typeScriptFiles(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

function isExported(node: ts.Node): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((mod) => mod.kind === ts.SyntaxKind.ExportKeyword);
}

/** Whether a `/** … *\/` comment stands right before the declaration (the statement, for a variable). */
function hasDocComment(node: ts.Node, text: string): boolean {
  const ranges = ts.getLeadingCommentRanges(text, node.getFullStart()) ?? [];
  return ranges.some((range) => text.startsWith('/**', range.pos));
}

function lineSpan(node: ts.Node, file: ts.SourceFile): number {
  const start = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
  const end = file.getLineAndCharacterOfPosition(node.getEnd()).line;
  return end - start + 1;
}

function measureFile(fileName: string, into: Figures): void {
  const text = readFileSync(fileName, 'utf8');
  const file = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  into.files++;
  into.lines += lines.length;
  if (lines.length > LONG_FILE_LINES) into.filesOver300++;
  into.linesOver120 += lines.filter((line) => line.length > LONG_LINE_CHARS).length;

  for (const statement of file.statements) {
    if (!isExported(statement)) continue;
    const documented = hasDocComment(statement, text);
    const count = ts.isVariableStatement(statement) ? statement.declarationList.declarations.length : 1;
    into.exportedSymbols += count;
    if (documented) into.documentedSymbols += count;
    if (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement)) {
      into.exportedFunctionsAndClasses++;
      if (documented) into.documentedFunctionsAndClasses++;
    }
  }

  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      into.functions++;
      if (lineSpan(node, file) > LONG_FUNCTION_LINES) into.functionsOver60++;
    }
    if (ts.isParameter(node) && ts.isIdentifier(node.name) && node.name.text !== 'this') {
      into.parameters++;
      if (node.name.text.length === 1) into.oneLetterParameters++;
    }
    if (ts.isAsExpression(node) && ts.isAsExpression(node.expression) && node.expression.type.kind === ts.SyntaxKind.UnknownKeyword) {
      into.asUnknownAs++;
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

function percent(part: number, whole: number): string {
  return whole === 0 ? '-' : `${((100 * part) / whole).toFixed(0)}%`;
}

function report(label: string, figures: Figures): string {
  return [
    `${label}: ${figures.files} files, ${figures.lines} lines`,
    `  files over ${LONG_FILE_LINES} lines: ${figures.filesOver300}`,
    `  functions over ${LONG_FUNCTION_LINES} lines: ${figures.functionsOver60} of ${figures.functions}`,
    `  one-letter parameters: ${figures.oneLetterParameters} of ${figures.parameters} (${percent(figures.oneLetterParameters, figures.parameters)})`,
    `  exported functions and classes with a doc comment: ${figures.documentedFunctionsAndClasses} of ${figures.exportedFunctionsAndClasses} (${percent(figures.documentedFunctionsAndClasses, figures.exportedFunctionsAndClasses)})`,
    `  exported symbols with a doc comment: ${figures.documentedSymbols} of ${figures.exportedSymbols} (${percent(figures.documentedSymbols, figures.exportedSymbols)})`,
    `  'as unknown as' casts: ${figures.asUnknownAs}`,
    `  lines over ${LONG_LINE_CHARS} characters: ${figures.linesOver120}`,
  ].join('\n');
}

const root = path.resolve(process.argv[2] ?? '.');
for (const scope of SCOPES) {
  const figures = emptyFigures();
  for (const fileName of typeScriptFiles(path.join(root, scope))) measureFile(fileName, figures);
  console.log(report(scope, figures));
}
