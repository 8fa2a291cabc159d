// Hello world: the smallest useful Lambda function.

export const handler = async (event, context) => {
  const name = event && typeof event === "object" && event.name ? event.name : "world";
  console.log(`greeting ${name}`);
  return {
    message: `Hello, ${name}!`,
    function: context.functionName,
    region: process.env.AWS_REGION,
  };
};
