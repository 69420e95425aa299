// The teaching view's words, in English and Korean. Each step's text is a
// function of the loaded model's real sizes (s), so the numbers are always
// this model's.
export const LANGUAGES = { en: 'English', ko: '한국어' };

export const TEXT = {
  en: {
    heading: 'How it works: this image through this model',
    intro: (s) => `Every number below is computed by vitrine's Rust engine for the image above and the model “${s.name}”, step by step, as in “An Image is Worth 16x16 Words”.`,
    open: 'How it works',
    close: 'Close the walk-through',
    language: 'Language',
    layer: 'Layer',
    head: 'Head',
    steps: [
      {
        title: '1. Cut the image into patches',
        body: (s) => `The model takes a ${s.h}×${s.w}×${s.c} image and cuts it into a grid of ${s.rows}×${s.cols} = ${s.n} square patches of ${s.p}×${s.p} pixels. A Transformer works on a sequence, so the image becomes a sequence of ${s.n} patches, read row by row. This picture is the model's actual input, after resizing${s.photo ? ' and its photo steps' : ''}.`,
      },
      {
        title: '2. Flatten each patch',
        body: (s) => `Each patch is unrolled into one long vector of ${s.p}·${s.p}·${s.c} = ${s.patchLen} numbers (the pixel values after normalisation). The strips show three patches (the one the class token attends to most in the last layer, the centre one and a corner one); each cell is one number.`,
      },
      {
        title: '3. Project each patch to D numbers',
        body: (s) => `A learned linear map (a ${s.patchLen}×${s.d} matrix, the same for every patch) turns each vector into an embedding of D = ${s.d} numbers: ${s.n}×${s.patchLen} → ${s.n}×${s.d}. This is the only place the model looks at pixels directly.`,
      },
      {
        title: '4. Prepend the class token',
        body: (s) => (s.cls
          ? `A learned vector of ${s.d} numbers, the class token, is put in front of the patches${s.prefix > 1 ? ` with ${s.prefix - 1} more learned token${s.prefix > 2 ? 's' : ''} after it` : ''}, so the sequence is (${s.n}+${s.prefix})×${s.d} = ${s.t}×${s.d}. The idea comes from BERT's [CLS] token: it belongs to no patch, so it is free to gather, through attention, whatever the whole image says about the class.${s.pool === 'token' ? ' At the end only this token is used to classify.' : ''}`
          : `Many ViTs put a learned class token in front of the patches; this one has none${s.regs ? `, only ${s.regs} register tokens` : ''}, so the sequence is ${s.t}×${s.d}. At the end it pools the patch tokens themselves (step 8), so its attention maps show the attention each patch receives, averaged over all the patches.`)
          + (s.dist ? ' The second token is the distillation token (DeiT, Touvron et al. 2021): in training it learned to reproduce a teacher network\'s prediction, while the class token learned the true labels; the final answer averages the two heads.' : '')
          + (s.regs ? ` The last ${s.regs} are register tokens: learned vectors that belong to no patch and are dropped at the end. Large ViTs trained without them take over a few background patches as scratch space, which shows up as bright spots in the attention maps; registers give that work a place of its own (Darcet et al. 2024, “Vision Transformers Need Registers”). The attention matrix in step 6 shows how much attention they draw.` : ''),
      },
      {
        title: '5. Add position embeddings',
        body: (s) => `Attention itself ignores order, so each position gets a learned vector of ${s.d} numbers added to its token. Nothing tells the model that patches form a 2-D grid: it learns that from data. Each small map below belongs to one patch position and shows how similar (cosine similarity) its position embedding is to every other position's: nearby positions end up alike, and rows and columns show up, as in the paper's Figure 7 (centre). Why learned rather than fixed? The paper tried 2-D-aware and relative variants and found plain learned 1-D embeddings work as well (its Appendix D.4): the model recovers the grid by itself.`,
      },
      {
        title: '6. The encoder layers',
        body: (s) => `Then ${s.layers} identical layers follow. In each: LayerNorm, then multi-head self-attention: every token makes a query, a key and a value (${s.heads} heads, each of width d = ${s.d}/${s.heads} = ${s.hd}; the paper's models use 64). Token i attends to token j with weight softmax(q_i·k_j/√${s.hd}); its output is the weighted sum of the values, the heads are concatenated and projected back to ${s.d}, and added to the input (a residual connection). Then LayerNorm, an MLP (${s.d} → ${s.mlp} → ${s.d} with GELU), and another residual. Shown for the chosen layer and head: the tokens after LayerNorm (${s.t}×${s.d}), Q, K and V (${s.t}×${s.hd} each), the ${s.t}×${s.t} attention matrix (row = the token looking, first row and column = the class token), the class token's row as a map over the image (this is how it gathers the class information: a weighted sum of what the patches offer), the tokens after the second LayerNorm and the MLP's output, and how long the token vectors are before and after each residual.${s.prefix !== 1 || !s.cls ? ` In this model the first ${s.prefix} rows and columns are ${s.prefix ? s.names.join(', ') : 'none: there are only patches'}; the table says how much of ${s.cls ? 'the class token\'s' : 'the patches\' average'} attention each token takes.` : ''}`,
      },
      {
        title: '7. How far does each head look?',
        body: (s) => `For each head, the mean attention distance is the average distance in pixels between a patch and the patches it attends to, weighted by attention. Each dot is one head; the paper's Figure 7 (right) shows that some heads look far even in the first layers while others stay local, and that the distance grows with depth. Here it is computed from this one image.`,
      },
      {
        title: '8. Classify from the class token',
        body: (s) => {
          const head = s.classes ? `a linear head (${s.pooled} → ${s.classes}) gives one score per class, and a softmax turns the scores into probabilities` : 'this backbone has no head: those numbers are its output, the image\'s features';
          switch (s.pool) {
            case 'token_and_distillation':
              return `After the last layer, a final LayerNorm; then the class token and the distillation token each go through a linear head of their own (${s.d} → ${s.classes}), and the two scores are averaged, as DeiT does at inference; a softmax turns them into probabilities.`;
            case 'token_and_avg':
              return `After the last layer, a final LayerNorm; then the class token's ${s.d} numbers and the mean of the patch tokens are put side by side (${s.pooled} numbers), and ${head}.`;
            case 'avg': case 'max': case 'avgmax':
              return `After the last layer, the ${s.n} patch tokens are pooled into one vector of ${s.d}: ${s.pool === 'avg' ? 'their mean (global average pooling)' : s.pool === 'max' ? 'the largest value of each channel' : 'half their mean plus half their maximum'}${s.fcNorm ? ', then a LayerNorm' : ''}; ${head}.`;
            default:
              return `After the last layer, a final LayerNorm; then only the class token's ${s.d} numbers go on: ${head}.`;
          }
        },
      },
      {
        title: '9. Why this class? Attention against relevance',
        body: (s) => (s.classes
          ? `Attention shows where the model looks, and it looks the same way whatever class you ask about: the rollout on the left is one map for every class. To ask why the model chose “${s.top[0]}”${s.top[1] ? ` rather than “${s.top[1]}”` : ''}, follow the gradient: how much would a class's score rise if an attention weight grew? Chefer, Gur & Wolf (2021) weight each layer's attention by that gradient, keep only the part that raised the score, and accumulate it through the layers. The maps on the right are that relevance for the top classes: patches bright in one and dark in the other are the evidence that separates them. The “why this class” switch above shows these maps for any of the top five, with gradient-weighted rollout as a second method.`
          : 'This model has no classifier, so there is no class score to explain: only attention, where it looks, can be shown.'),
      },
    ],
    labels: {
      input: 'The model\'s input with its patch grid',
      vector: (i, r, c) => `patch ${i} (row ${r}, column ${c})`,
      cls: 'class token',
      normsBefore: 'entering the layer',
      normsAttn: 'after attention + residual',
      normsMlp: 'after MLP + residual',
      meanNorm: 'mean token length',
      distanceAxis: 'mean attention distance (pixels)',
      layerAxis: 'layer',
      q: 'Q', k: 'K', v: 'V',
      attention: 'attention matrix',
      normed: 'after LayerNorm (what attention sees)',
      normed2: 'after the second LayerNorm (what the MLP sees)',
      mlpOut: 'MLP output (added by the residual)',
      clsRow: 'class token → patches',
      top: 'top classes',
      noHead: 'no classifier: this backbone’s output is the vector above, its features',
      pooled: 'what the head sees',
      prefix: 'learned tokens before the patches',
      share: (name) => `attention to ${name}`,
      patchesShare: 'attention to the patches',
      rollout: 'attention rollout: the same for every class',
      why: (label) => `why “${label}”: relevance`,
    },
  },
  ko: {
    heading: '작동 원리: 이 이미지가 이 모델을 지나가는 과정',
    intro: (s) => `아래의 모든 숫자는 위의 이미지와 모델 “${s.name}”에 대해 vitrine의 Rust 엔진이 단계별로 계산한 실제 값입니다. 「An Image is Worth 16x16 Words」 논문의 순서를 따릅니다.`,
    open: '작동 원리',
    close: '설명 닫기',
    language: '언어',
    layer: '층',
    head: '헤드',
    steps: [
      {
        title: '1. 이미지를 패치로 자르기',
        body: (s) => `모델은 ${s.h}×${s.w}×${s.c} 이미지를 ${s.p}×${s.p} 픽셀 크기의 정사각형 패치 ${s.rows}×${s.cols} = ${s.n}개로 자릅니다. 트랜스포머는 시퀀스를 다루므로, 이미지는 한 줄씩 읽은 ${s.n}개 패치의 시퀀스가 됩니다. 이 그림은 크기 조정${s.photo ? '과 사진 전처리' : ''}를 거친 모델의 실제 입력입니다.`,
      },
      {
        title: '2. 각 패치를 펼치기',
        body: (s) => `각 패치는 ${s.p}·${s.p}·${s.c} = ${s.patchLen}개의 숫자(정규화된 픽셀 값)로 이루어진 하나의 긴 벡터로 펼쳐집니다. 띠 그림은 세 패치(마지막 층에서 클래스 토큰이 가장 주목하는 패치, 가운데 패치, 모서리 패치)를 보여 주며, 한 칸이 숫자 하나입니다.`,
      },
      {
        title: '3. 각 패치를 D개의 숫자로 사영하기',
        body: (s) => `학습된 선형 변환(모든 패치에 똑같이 쓰이는 ${s.patchLen}×${s.d} 행렬)이 각 벡터를 D = ${s.d}개의 숫자로 된 임베딩으로 바꿉니다: ${s.n}×${s.patchLen} → ${s.n}×${s.d}. 모델이 픽셀을 직접 보는 곳은 여기뿐입니다.`,
      },
      {
        title: '4. 클래스 토큰 붙이기',
        body: (s) => (s.cls
          ? `학습된 ${s.d}개 숫자의 벡터인 클래스 토큰을 패치들 앞에 붙여${s.prefix > 1 ? `(그 뒤에 학습된 토큰 ${s.prefix - 1}개가 더 붙습니다)` : ''}, 시퀀스는 (${s.n}+${s.prefix})×${s.d} = ${s.t}×${s.d}가 됩니다. 이 아이디어는 BERT의 [CLS] 토큰에서 왔습니다. 어느 패치에도 속하지 않기 때문에 어텐션을 통해 이미지 전체가 클래스에 대해 말해 주는 정보를 모을 수 있습니다.${s.pool === 'token' ? ' 마지막에는 이 토큰만으로 분류합니다.' : ''}`
          : `많은 ViT는 패치들 앞에 학습된 클래스 토큰을 붙이지만, 이 모델에는 그것이 없습니다${s.regs ? `(레지스터 토큰 ${s.regs}개만 있습니다)` : ''}. 그래서 시퀀스는 ${s.t}×${s.d}입니다. 마지막에 패치 토큰들 자체를 풀링하므로(8단계), 어텐션 지도는 각 패치가 받는 어텐션을 모든 패치에 대해 평균한 것입니다.`)
          + (s.dist ? ' 두 번째 토큰은 증류 토큰입니다(DeiT, Touvron 외 2021). 학습할 때 클래스 토큰은 정답 레이블을, 증류 토큰은 교사 네트워크의 예측을 따라 하도록 배웠고, 최종 답은 두 헤드의 평균입니다.' : '')
          + (s.regs ? ` 마지막 ${s.regs}개는 레지스터 토큰입니다. 어느 패치에도 속하지 않는 학습된 벡터로, 끝에서 버려집니다. 레지스터 없이 학습된 큰 ViT는 배경 패치 몇 개를 계산용 메모장처럼 차지해 버리고, 그것이 어텐션 지도에 밝은 점으로 나타납니다. 레지스터는 그 일을 위한 자리를 따로 마련해 줍니다(Darcet 외 2024, 「Vision Transformers Need Registers」). 6단계의 어텐션 행렬에서 레지스터가 어텐션을 얼마나 가져가는지 볼 수 있습니다.` : ''),
      },
      {
        title: '5. 위치 임베딩 더하기',
        body: (s) => `어텐션 자체는 순서를 모르기 때문에, 각 위치마다 학습된 ${s.d}개 숫자의 벡터를 토큰에 더합니다. 패치가 2차원 격자를 이룬다는 사실은 어디에도 알려 주지 않습니다. 모델이 데이터에서 배웁니다. 아래의 작은 지도 하나하나는 한 패치 위치에 해당하며, 그 위치 임베딩이 다른 모든 위치의 임베딩과 얼마나 비슷한지(코사인 유사도)를 보여 줍니다. 논문의 그림 7(가운데)처럼 가까운 위치끼리 비슷해지고 행과 열의 구조가 드러납니다. 왜 고정된 값이 아니라 학습할까요? 논문은 2차원 구조를 반영한 방식과 상대 위치 방식도 시험했지만, 단순히 학습하는 1차원 임베딩도 똑같이 잘 작동했습니다(부록 D.4). 모델이 격자 구조를 스스로 찾아냅니다.`,
      },
      {
        title: '6. 인코더 층',
        body: (s) => `이어서 똑같은 구조의 층 ${s.layers}개가 나옵니다. 각 층에서: 레이어 정규화(LayerNorm) 뒤 멀티헤드 셀프 어텐션. 모든 토큰이 쿼리(Q), 키(K), 값(V)을 만듭니다(헤드 ${s.heads}개, 헤드 폭 d = ${s.d}/${s.heads} = ${s.hd}; 논문의 모델은 64를 씁니다). 토큰 i는 토큰 j에 softmax(q_i·k_j/√${s.hd})의 가중치로 주목하고, 출력은 값들의 가중합입니다. 헤드들을 이어 붙여 다시 ${s.d}차원으로 사영한 뒤 입력에 더합니다(잔차 연결). 그다음 레이어 정규화, MLP(${s.d} → ${s.mlp} → ${s.d}, GELU), 그리고 또 한 번의 잔차 연결. 고른 층과 헤드에 대해 레이어 정규화 뒤의 토큰(${s.t}×${s.d}), Q, K, V(각 ${s.t}×${s.hd}), ${s.t}×${s.t} 어텐션 행렬(행 = 바라보는 토큰, 첫 행과 첫 열 = 클래스 토큰), 이미지 위에 그린 클래스 토큰의 행(클래스 토큰은 이렇게, 패치들이 내놓는 값의 가중합으로 클래스 정보를 모읍니다), 두 번째 레이어 정규화 뒤의 토큰과 MLP 출력, 그리고 각 잔차 연결 전후의 토큰 벡터 길이를 보여 줍니다.${s.prefix !== 1 || !s.cls ? ` 이 모델에서 처음 ${s.prefix}개의 행과 열은 ${s.prefix ? s.names.join(', ') : '없습니다(패치만 있습니다)'}이며, 표는 ${s.cls ? '클래스 토큰의' : '패치들의 평균'} 어텐션을 각 토큰이 얼마나 가져가는지 보여 줍니다.` : ''}`,
      },
      {
        title: '7. 각 헤드는 얼마나 멀리 보는가?',
        body: (s) => `헤드마다 평균 어텐션 거리는 한 패치와 그 패치가 주목하는 패치들 사이의 거리(픽셀)를 어텐션으로 가중 평균한 값입니다. 점 하나가 헤드 하나입니다. 논문의 그림 7(오른쪽)은 첫 층에서도 멀리 보는 헤드와 가까이만 보는 헤드가 함께 있고, 깊어질수록 거리가 커진다는 것을 보여 줍니다. 여기서는 이 이미지 한 장으로 계산했습니다.`,
      },
      {
        title: '8. 클래스 토큰으로 분류하기',
        body: (s) => {
          const head = s.classes ? `선형 헤드(${s.pooled} → ${s.classes})를 지나 클래스마다 점수 하나가 되고, 소프트맥스가 점수를 확률로 바꿉니다` : '이 백본에는 헤드가 없어서 그 숫자들이 곧 출력, 이미지의 특징 벡터입니다';
          switch (s.pool) {
            case 'token_and_distillation':
              return `마지막 층 뒤에 마지막 레이어 정규화를 거치고, 클래스 토큰과 증류 토큰이 각자의 선형 헤드(${s.d} → ${s.classes})를 지나며, DeiT가 추론할 때처럼 두 점수를 평균합니다. 소프트맥스가 이를 확률로 바꿉니다.`;
            case 'token_and_avg':
              return `마지막 층 뒤에 마지막 레이어 정규화를 거치고, 클래스 토큰의 ${s.d}개 숫자와 패치 토큰들의 평균을 나란히 이어 붙여(${s.pooled}개) ${head}.`;
            case 'avg': case 'max': case 'avgmax':
              return `마지막 층 뒤에 ${s.n}개의 패치 토큰을 ${s.d}개 숫자의 벡터 하나로 풀링합니다: ${s.pool === 'avg' ? '평균(전역 평균 풀링)' : s.pool === 'max' ? '채널마다 가장 큰 값' : '평균의 절반과 최댓값의 절반의 합'}${s.fcNorm ? ', 그다음 레이어 정규화' : ''}. 그리고 ${head}.`;
            default:
              return `마지막 층 뒤에 마지막 레이어 정규화를 거치고, 클래스 토큰의 ${s.d}개 숫자만 다음으로 갑니다: ${head}.`;
          }
        },
      },
      {
        title: '9. 왜 이 클래스인가? 어텐션과 관련도',
        body: (s) => (s.classes
          ? `어텐션은 모델이 어디를 보는지 보여 줄 뿐, 어떤 클래스를 묻든 똑같습니다. 왼쪽의 롤아웃은 모든 클래스에 대해 같은 지도 하나입니다. 모델이 왜 “${s.top[0]}”${s.top[1] ? `을(를) “${s.top[1]}” 대신` : '을(를)'} 골랐는지 물으려면 기울기(gradient)를 따라가야 합니다. 어텐션 가중치가 커지면 그 클래스의 점수가 얼마나 오를까요? Chefer, Gur, Wolf(2021)는 각 층의 어텐션에 이 기울기를 곱하고, 점수를 올린 부분만 남겨 층을 따라 누적합니다. 오른쪽 지도들은 상위 클래스들에 대한 그 관련도입니다. 한쪽에서는 밝고 다른 쪽에서는 어두운 패치가 두 클래스를 가르는 증거입니다. 위의 “why this class” 스위치는 상위 다섯 클래스 중 어느 것이든 이 지도를 보여 주며, 두 번째 방법으로 기울기 가중 롤아웃도 보여 줍니다.`
          : '이 모델에는 분류기가 없어서 설명할 클래스 점수가 없습니다. 어텐션, 곧 모델이 어디를 보는지만 보여 줄 수 있습니다.'),
      },
    ],
    labels: {
      input: '패치 격자를 그린 모델의 입력',
      vector: (i, r, c) => `패치 ${i} (${r}행, ${c}열)`,
      cls: '클래스 토큰',
      normsBefore: '층에 들어갈 때',
      normsAttn: '어텐션 + 잔차 뒤',
      normsMlp: 'MLP + 잔차 뒤',
      meanNorm: '토큰 길이 평균',
      distanceAxis: '평균 어텐션 거리 (픽셀)',
      layerAxis: '층',
      q: 'Q', k: 'K', v: 'V',
      attention: '어텐션 행렬',
      normed: '레이어 정규화 뒤 (어텐션이 보는 값)',
      normed2: '두 번째 레이어 정규화 뒤 (MLP가 보는 값)',
      mlpOut: 'MLP 출력 (잔차로 더해지는 값)',
      clsRow: '클래스 토큰 → 패치',
      top: '상위 클래스',
      noHead: '분류기 없음: 이 백본의 출력은 위의 벡터, 곧 특징 벡터입니다',
      pooled: '헤드가 보는 값',
      prefix: '패치 앞의 학습된 토큰',
      share: (name) => `${name} 토큰이 받는 어텐션`,
      patchesShare: '패치들이 받는 어텐션',
      rollout: '어텐션 롤아웃: 모든 클래스에 같음',
      why: (label) => `왜 “${label}”인가: 관련도`,
    },
  },
};
