// Local ESLint plugin: imports may only point down the layer diagram of DESIGN.md.
import { dirname, resolve, relative, sep } from 'node:path';

/** Layers from the bottom (0) to the top. A file belongs to the deepest prefix that matches. */
export const LAYERS = [
  'src/engine/host',
  'src/engine',
  'src/engine/tcg',
  'src/engine/targets',
  'src/engine/hw',
  'src/block',
  'src/blockjob',
  'src/gdbstub',
  'src/qtest',
  'src/replay',
  'src/monitor',
  'src/system',
  'tools',
];

/** Upward imports that DESIGN.md allows explicitly: devices reach the block layer through BlockBackend. */
const ALLOWED_UP = [{ from: 'src/engine/hw', to: 'src/block/block-backend' }];

function layerOf(relPath) {
  const p = relPath.split(sep).join('/');
  let best = -1;
  let bestLen = -1;
  LAYERS.forEach((layer, index) => {
    if ((p === layer || p.startsWith(layer + '/')) && layer.length > bestLen) {
      best = index;
      bestLen = layer.length;
    }
  });
  return best;
}

export default {
  rules: {
    'layer-imports': {
      meta: { type: 'problem', messages: { up: "'{{from}}' may not import '{{to}}': imports point down the layer diagram (DESIGN.md)." } },
      create(context) {
        const root = context.cwd;
        const file = relative(root, context.filename);
        const fromLayer = layerOf(file);
        if (fromLayer < 0) return {};
        function check(node, source) {
          if (!source || !source.startsWith('.')) return;
          const target = relative(root, resolve(dirname(context.filename), source)).split(sep).join('/');
          const toLayer = layerOf(target);
          if (toLayer <= fromLayer) return;
          const fromName = LAYERS[fromLayer];
          if (ALLOWED_UP.some((a) => a.from === fromName && target.replace(/\.(js|ts)$/, '') === a.to)) return;
          context.report({ node, messageId: 'up', data: { from: file, to: target } });
        }
        return {
          ImportDeclaration(node) { check(node, node.source.value); },
          ExportNamedDeclaration(node) { if (node.source) check(node, node.source.value); },
          ExportAllDeclaration(node) { check(node, node.source.value); },
          ImportExpression(node) { if (node.source.type === 'Literal') check(node, node.source.value); },
        };
      },
    },
  },
};
